"""What the campaign tests share: a department with a published benefit procedure, residents
with an eligibility number, staff of two departments, and a draft campaign.

A test module imports the fixtures it uses (`<name>_fixture`, registered under `<name>`, so that
a test's parameter does not shadow the import).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts import campaigns
from broadcasts.models import Campaign, CampaignRecipient
from messaging.line import postback
from messaging.models import LineUser, OutboxMessage
from messaging.tests.test_webhook import actions_in, user_id
from procedures.services import procedure_import, version_publish
from procedures.tests.engine_fixtures import spec_data, step_dict
from procedures.tests.factories import DepartmentFactory, StaffUserFactory
from procedures.tests.spec_data import template_bytes
from residents.models import Attribute, Resident, ResidentAttributeValue
from staff.models import Role, StaffMembership

QUESTION = "臨時特別給付金（1人10万円）の対象です。LINE で申請しますか？"
FIXED_ANSWERS = {"agree": True, "method": "bank"}
YES, NO = "申請する", "申請しない"


def staff_of(department, role=Role.DEPARTMENT_STAFF, username=None):
    user = StaffUserFactory(is_superuser=False, **({"username": username} if username else {}))
    StaffMembership.objects.create(user=user, role=role, department=department)
    return user


def eligible_resident(number: int, eligibility: str, attribute: Attribute, *, following: bool = True) -> Resident:
    resident = Resident.objects.create(line_user_id=user_id(number), display_name=f"住民{number}")
    ResidentAttributeValue.objects.create(resident=resident, attribute=attribute, value_text=eligibility)
    LineUser.objects.create(line_user_id=resident.line_user_id, resident=resident, is_following=following)
    return resident


def csv_bytes(*lines: str, encoding: str = "utf-8") -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def last_buttons(line_user_id: str) -> dict[str, dict]:
    """The campaign buttons of the last message queued for the resident, by label."""
    row = OutboxMessage.objects.filter(line_user_id=line_user_id).order_by("-pk").first()
    assert row is not None, "nothing was queued for this resident"
    return {action["label"]: action for message in row.payload for action in actions_in(message)}


def tap_event(line_user_id: str, label: str):
    """The engine Event the signed postback of the button brings back."""
    return postback.decode(last_buttons(line_user_id)[label]["data"])


def queued_text(line_user_id: str) -> str:
    return json.dumps(
        [row.payload for row in OutboxMessage.objects.filter(line_user_id=line_user_id).order_by("pk")],
        ensure_ascii=False,
    )


@pytest.fixture(name="department")
def department_fixture():
    return DepartmentFactory(name="福祉課", code="welfare")


@pytest.fixture(name="other_department")
def other_department_fixture():
    return DepartmentFactory(name="税務課", code="tax")


@pytest.fixture(name="staff")
def staff_fixture(department):
    return staff_of(department, username="welfare_staff")


def benefit_procedure(department, name: str = "臨時特別給付金の申請"):
    """A published yes/no benefit procedure whose answers a campaign fixes (FIXED_ANSWERS)."""
    data = spec_data(
        step_dict("agree", "yes_no", "給付金の支給要件に同意しますか？"),
        step_dict(
            "method",
            "single_choice",
            "受取方法",
            choices=[{"value": "bank", "label": "登録口座への振込"}, {"value": "cash", "label": "窓口"}],
        ),
        name=name,
        keywords=("給付金",),
        receipt_prefix="KYUFU",
    )
    procedure = procedure_import(raw=template_bytes(data), max_bytes=1_000_000, department=department)
    version_publish(version=procedure.draft)
    procedure.refresh_from_db()
    return procedure


@pytest.fixture(name="procedure")
def procedure_fixture(department):
    return benefit_procedure(department)


@pytest.fixture(name="attribute")
def attribute_fixture():
    return Attribute.objects.create(key="eligibility_no", label="対象者番号", kind=Attribute.Kind.TEXT)


@pytest.fixture(name="campaign")
def campaign_fixture(department, procedure, attribute, staff):
    return Campaign.objects.create(
        name="臨時特別給付金 2026",
        department=department,
        procedure=procedure,
        fixed_answers=dict(FIXED_ANSWERS),
        question=QUESTION,
        yes_label=YES,
        no_label=NO,
        deadline=timezone.now() + timedelta(days=14),
        reminder_after_days=3,
        reminder_text="給付金のご案内への回答がまだのようです。",
        match_by=Campaign.MatchBy.ATTRIBUTE,
        match_attribute=attribute,
        key_column="対象者番号",
        created_by=staff,
    )


@pytest.fixture(name="queued_tasks")
def queued_tasks_fixture(monkeypatch) -> list[tuple]:
    """The campaign tasks queued (run by the tests themselves)."""
    calls: list[tuple] = []
    monkeypatch.setattr(campaigns, "async_task", lambda func, *args, **kwargs: calls.append((func, *args)))
    return calls


def send(campaign, staff, queued_tasks) -> campaigns.PushRun:
    """Start sending as staff, then run the queued push task as the cluster would."""
    campaigns.campaign_send_start(campaign=campaign, actor=staff)
    return campaigns.campaign_push(campaign_id=campaign.pk)


def recipient_of(campaign, resident) -> CampaignRecipient:
    return CampaignRecipient.objects.get(campaign=campaign, resident=resident)
