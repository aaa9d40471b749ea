"""The ready-made 受信設定 procedure: residents choose the categories they receive, and their district.

It is made from the categories (and the district attribute, when there is one) that exist when it
is created, as a template imported and published through procedures' services like any other
template, so staff can edit it in the builder afterwards. Residents start it with the keyword
受信設定 (or a start button / rich menu naming its procedure) and may run it again at any time:
each submission replaces their choices, and the profile history keeps the earlier ones.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from procedures.models import Procedure
from procedures.services import ProblemsError, procedure_import, version_publish
from procedures.spec import PROFILE_TARGET_ATTRIBUTE_PREFIX, PROFILE_TARGET_CATEGORIES, SPEC_FORMAT, SPEC_FORMAT_VERSION
from residents.models import Attribute, Category

RECEIVE_SETTINGS_PREFIX = "JUSHIN"
RECEIVE_SETTINGS_KEYWORD = "受信設定"
DISTRICT_ATTRIBUTE_KEY = "district"
DISTRICT_ATTRIBUTE_LABEL = "地区"


def district_attribute() -> Attribute | None:
    """The single-choice attribute that holds the resident's district (key district, or named 地区)."""
    candidates = Attribute.objects.filter(kind=Attribute.Kind.SINGLE_CHOICE).filter(
        Q(key=DISTRICT_ATTRIBUTE_KEY) | Q(label=DISTRICT_ATTRIBUTE_LABEL)
    )
    return candidates.filter(key=DISTRICT_ATTRIBUTE_KEY).first() or candidates.first()


def receive_settings_spec_data() -> dict:
    """The procedure as template data, from the active categories and the district attribute."""
    categories = list(Category.objects.filter(is_active=True))
    if not categories:
        raise ProblemsError([_("受信設定の手続きを作るには、受付中の配信カテゴリを1つ以上作成してください。")])
    steps = [
        {
            "key": "intro",
            "kind": "message",
            "label": _("お知らせを受け取る分野と地区を設定します。設定はあとから何度でも変更できます。"),
        },
        {
            "key": "categories",
            "kind": "multiple_choice",
            "label": _("受け取りたいお知らせの分野を選んでください（いくつでも選べます）。"),
            "options": {"min_selected": 1},
            "choices": [{"value": category.key, "label": category.name} for category in categories],
            "profile_target": PROFILE_TARGET_CATEGORIES,
        },
    ]
    district = district_attribute()
    if district is not None and district.choices:
        steps.append(
            {
                "key": "district",
                "kind": "single_choice",
                "label": _("お住まいの%(label)sを選んでください。") % {"label": district.label},
                "choices": [
                    {"value": choice["value"], "label": choice.get("label") or choice["value"]}
                    for choice in district.choices
                ],
                "profile_target": f"{PROFILE_TARGET_ATTRIBUTE_PREFIX}{district.key}",
            }
        )
    steps += [
        {
            "key": "confirm",
            "kind": "confirmation",
            "label": _("この内容で設定します。よろしければ「この内容で申し込む」を押してください。"),
        },
        {
            "key": "done",
            "kind": "completion",
            "label": _("受信設定を保存しました。変更するときは、もう一度「受信設定」と送ってください。"),
        },
    ]
    return {
        "name": _("受信設定"),
        "description": _("住民が受け取るお知らせの分野と、お住まいの地区を設定します。"),
        "keywords": [RECEIVE_SETTINGS_KEYWORD],
        "receipt_prefix": RECEIVE_SETTINGS_PREFIX,
        "steps": steps,
    }


def receive_settings_procedure() -> Procedure | None:
    return Procedure.objects.filter(receipt_prefix=RECEIVE_SETTINGS_PREFIX).first()


@transaction.atomic
def receive_settings_procedure_create(*, department=None, actor=None) -> Procedure:
    """Create and publish the 受信設定 procedure; ProblemsError when it exists or cannot be made."""
    if receive_settings_procedure() is not None:
        raise ProblemsError(
            [
                _("受信設定の手続き（受付番号 %(prefix)s）はすでにあります。内容は手続きの編集画面で変更してください。")
                % {"prefix": RECEIVE_SETTINGS_PREFIX}
            ]
        )
    envelope = {"format": SPEC_FORMAT, "format_version": SPEC_FORMAT_VERSION, "procedure": receive_settings_spec_data()}
    procedure = procedure_import(
        raw=json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
        max_bytes=settings.PROCEDURE_IMPORT_MAX_BYTES,
        department=department,
    )
    # A resident's own settings: recorded on their profile, nothing for staff to act on.
    procedure.needs_staff_review = False
    procedure.save(update_fields=["needs_staff_review", "updated_at"])
    version_publish(version=procedure.draft, user=actor)
    procedure.refresh_from_db()
    return procedure
