"""Demo data: real-looking procedures modelled on Ogi city's LINE service.

`load_demo()` makes the departments 市民課 (shimin) and 環境衛生課 (kankyo),
imports the shareable templates in procedures/templates_library/ with the
same code path a city uses for any template file (services.procedure_import),
and publishes them. It also makes the residents' categories (防災, 子育て, ...)
and attributes (地区, 子どもの有無) and the 受信設定 procedure built from them
(residents/receive_settings.py). It is idempotent: a category, attribute or
procedure whose key or receipt prefix already exists is left exactly as it is
(even if staff have edited it since), so re-running never duplicates or
overwrites anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from procedures.models import Procedure
from procedures.services import procedure_import, version_publish
from residents.models import Attribute, Category
from residents.receive_settings import (
    RECEIVE_SETTINGS_PREFIX,
    receive_settings_procedure,
    receive_settings_procedure_create,
)
from staff.models import Department

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates_library"


@dataclass(frozen=True)
class DemoDepartment:
    code: str
    name: str


@dataclass(frozen=True)
class DemoTemplate:
    file_name: str
    receipt_prefix: str
    department_code: str

    @property
    def path(self) -> Path:
        return TEMPLATES_DIR / self.file_name


DEMO_DEPARTMENTS = (
    DemoDepartment(code="shimin", name="市民課"),
    DemoDepartment(code="kankyo", name="環境衛生課"),
)

DEMO_TEMPLATES = (
    DemoTemplate(file_name="residence_certificate_mail.json", receipt_prefix="JUMIN", department_code="shimin"),
    DemoTemplate(file_name="bulky_garbage.json", receipt_prefix="SODAI", department_code="kankyo"),
)


# (key, name): what residents choose to receive in 受信設定.
DEMO_CATEGORIES = (
    ("bousai", "防災"),
    ("kosodate", "子育て"),
    ("event", "イベント"),
    ("gomi", "ごみ"),
    ("kenkou", "健康"),
)
# (key, label, kind, choices as (value, label)).
DEMO_ATTRIBUTES = (
    (
        "district",
        "地区",
        Attribute.Kind.SINGLE_CHOICE,
        (("ogi", "小城町"), ("mikazuki", "三日月町"), ("ushizu", "牛津町"), ("ashikari", "芦刈町")),
    ),
    ("children", "子どもの有無", Attribute.Kind.SINGLE_CHOICE, (("yes", "いる"), ("no", "いない"))),
)


@dataclass(frozen=True)
class DemoResult:
    receipt_prefix: str
    procedure: Procedure
    created: bool


def load_demo() -> list[DemoResult]:
    """Create the demo departments and publish the demo procedures that are not there yet."""
    departments = {}
    for item in DEMO_DEPARTMENTS:
        department, _created = Department.objects.get_or_create(code=item.code, defaults={"name": item.name})
        departments[item.code] = department
    results = []
    for template in DEMO_TEMPLATES:
        existing = Procedure.objects.filter(receipt_prefix=template.receipt_prefix).first()
        if existing is not None:
            results.append(DemoResult(template.receipt_prefix, existing, created=False))
            continue
        raw = template.path.read_bytes()
        # Import and publish together: a failure leaves no half-made demo procedure behind.
        with transaction.atomic():
            procedure = procedure_import(
                raw=raw,
                max_bytes=settings.PROCEDURE_IMPORT_MAX_BYTES,
                department=departments[template.department_code],
                receipt_prefix=template.receipt_prefix,
            )
            version_publish(version=procedure.draft)
        procedure.refresh_from_db()
        results.append(DemoResult(template.receipt_prefix, procedure, created=True))
    results.append(_receive_settings_demo())
    return results


@transaction.atomic
def _receive_settings_demo() -> DemoResult:
    for position, (key, name) in enumerate(DEMO_CATEGORIES, start=1):
        Category.objects.get_or_create(key=key, defaults={"name": name, "position": position * 10})
    for position, (key, label, kind, choices) in enumerate(DEMO_ATTRIBUTES, start=1):
        Attribute.objects.get_or_create(
            key=key,
            defaults={
                "label": label,
                "kind": kind,
                "choices": [{"value": value, "label": text} for value, text in choices],
                "position": position * 10,
            },
        )
    existing = receive_settings_procedure()
    if existing is not None:
        return DemoResult(RECEIVE_SETTINGS_PREFIX, existing, created=False)
    return DemoResult(RECEIVE_SETTINGS_PREFIX, receive_settings_procedure_create(), created=True)
