"""Campaigns: pushing the yes/no question, the resident's answer, reminders, results and access."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit import actions as audit_actions
from audit.models import AuditEntry
from broadcasts import campaigns
from broadcasts.models import Campaign, CampaignRecipient
from broadcasts.tests.campaign_world import (  # noqa: F401 (fixtures)
    FIXED_ANSWERS,
    NO,
    QUESTION,
    YES,
    attribute_fixture,
    campaign_fixture,
    csv_bytes,
    department_fixture,
    eligible_resident,
    last_buttons,
    other_department_fixture,
    procedure_fixture,
    queued_tasks_fixture,
    queued_text,
    recipient_of,
    send,
    staff_fixture,
    staff_of,
    tap_event,
)
from messaging import services as messaging_services
from messaging.models import OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    LinePhone,
    line_channel,
    postback_event,
    wakeups,
)
from procedures.engine.types import Event
from procedures.models import Application
from procedures.texts import render_message
from staff import policy
from staff.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def residents(campaign, staff, attribute):
    """Two eligible followers, one who blocked the account, one eligible person not registered."""
    people = {
        "first": eligible_resident(1, "A001", attribute),
        "second": eligible_resident(2, "A002", attribute),
        "blocked": eligible_resident(3, "A003", attribute, following=False),
    }
    campaigns.recipients_import(
        campaign=campaign, raw=csv_bytes("対象者番号", "A001", "A002", "A003", "=HYPERLINK(1)"), actor=staff
    )
    return people


def answer(resident, label: str, *, tapped_by=None, event=None):
    """What the resident (or `tapped_by`) is told after tapping `label` on the resident's last question."""
    event = event or tap_event(resident.line_user_id, label)
    reply = campaigns.campaign_postback_reply(event=event, line_user_id=(tapped_by or resident).line_user_id)
    assert reply is not None
    return "\n".join(render_message(message) for message in reply)


def test_send_pushes_the_question_once_to_each_matched_follower_and_a_second_send_pushes_nothing(
    campaign, staff, residents, queued_tasks, fake_line
):
    run = send(campaign, staff, queued_tasks)
    assert (run.pushed, run.unreachable) == (2, 1)
    messaging_services.outbox_send()
    for name in ("first", "second"):
        received = fake_line.messages_sent_to(residents[name].line_user_id)
        assert len(received) == 1
        template = received[0]["template"]
        assert template["type"] == "confirm" and template["text"] == QUESTION
        assert [action["label"] for action in template["actions"]] == [YES, NO]
        assert all(action["type"] == "postback" for action in template["actions"])
        assert "A00" not in str(received)  # the eligibility number never goes to LINE
    assert fake_line.messages_sent_to(residents["blocked"].line_user_id) == []
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.OPEN
    first = recipient_of(campaign, residents["first"])
    assert first.pushed_at is not None and len(first.token_hash) == 64
    # The token is only in the button, stored hashed.
    assert first.token_hash not in str(last_buttons(residents["first"].line_user_id))

    rows_before = OutboxMessage.objects.count()
    again = send(campaign, staff, queued_tasks)
    messaging_services.outbox_send()
    assert (again.pushed, OutboxMessage.objects.count()) == (0, rows_before)
    assert len(fake_line.messages_sent_to(residents["first"].line_user_id)) == 1


def test_yes_creates_a_completed_application_with_the_fixed_answers_visible_to_staff(
    campaign, staff, residents, queued_tasks, client
):
    send(campaign, staff, queued_tasks)
    reply = answer(residents["first"], YES)
    recipient = recipient_of(campaign, residents["first"])
    application = recipient.application
    assert recipient.answer == CampaignRecipient.Answer.YES and recipient.answered_at is not None
    assert application.status.code == "completed" and application.answers == FIXED_ANSWERS
    assert application.channel == Application.Channel.CAMPAIGN
    assert not application.needs_action  # staff asked; the yes completes it
    assert application.resident == residents["first"] and application.procedure == campaign.procedure
    assert application.status_changes.get().via == "system"
    assert f"受付番号：{application.receipt_number}" in reply and "現在の状態：完了" in reply
    assert "A001" not in reply
    assert policy.applications_visible_to(staff, action=policy.VIEW).filter(pk=application.pk).exists()
    client.force_login(staff)
    page = client.get(reverse("admin:procedures_application_change", args=[application.pk]))
    assert page.status_code == 200 and "登録口座への振込" in page.content.decode()


def test_no_records_the_decline_and_creates_no_application(campaign, staff, residents, queued_tasks):
    send(campaign, staff, queued_tasks)
    reply = answer(residents["first"], NO)
    recipient = recipient_of(campaign, residents["first"])
    assert recipient.answer == CampaignRecipient.Answer.NO and recipient.application is None
    assert f"「{NO}」として承りました" in reply
    assert Application.objects.count() == 0


def test_a_double_tap_changes_nothing_and_says_so_with_the_receipt_number(campaign, staff, residents, queued_tasks):
    send(campaign, staff, queued_tasks)
    yes, no = (tap_event(residents["first"].line_user_id, label) for label in (YES, NO))
    answer(residents["first"], YES, event=yes)
    application = Application.objects.get()
    again = answer(residents["first"], YES, event=yes)
    then_no = answer(residents["first"], NO, event=no)
    assert Application.objects.count() == 1
    for reply in (again, then_no):
        assert "すでに「はい」とご回答いただいています。" in reply and application.receipt_number in reply
    assert recipient_of(campaign, residents["first"]).answer == CampaignRecipient.Answer.YES


def test_a_tap_after_the_deadline_changes_nothing(campaign, staff, residents, queued_tasks):
    send(campaign, staff, queued_tasks)
    with time_machine.travel(campaign.deadline + timedelta(minutes=1)):
        reply = answer(residents["first"], YES)
    assert "回答の受付は" in reply and "で終了しました" in reply
    assert Application.objects.count() == 0
    assert recipient_of(campaign, residents["first"]).answer == CampaignRecipient.Answer.NONE


def test_a_forged_token_changes_nothing(campaign, staff, residents, queued_tasks):
    send(campaign, staff, queued_tasks)
    recipient = recipient_of(campaign, residents["first"])
    for value in (f"campaign:{recipient.pk}:forged-token", f"campaign:{recipient.pk}", "campaign:x:y", None):
        forged = Event(type="command", name=campaigns.COMMAND_YES, value=value)
        reply = campaigns.campaign_postback_reply(event=forged, line_user_id=residents["first"].line_user_id)
        assert (
            render_message(reply[0]) == "このボタンは使えません。市からの最新のメッセージのボタンからお答えください。"
        )
    assert Application.objects.count() == 0
    assert recipient_of(campaign, residents["first"]).answer == CampaignRecipient.Answer.NONE


def test_another_residents_token_changes_nothing(campaign, staff, residents, queued_tasks):
    send(campaign, staff, queued_tasks)
    reply = answer(residents["first"], YES, tapped_by=residents["second"])
    assert "別の方にお送りしたもの" in reply
    assert Application.objects.count() == 0
    assert recipient_of(campaign, residents["first"]).answer == CampaignRecipient.Answer.NONE


def test_other_postbacks_are_not_the_campaigns():
    assert campaigns.campaign_postback_reply(event=Event(type="command", name="cancel"), line_user_id="U1") is None
    assert campaigns.campaign_postback_reply(event=None, line_user_id="U1") is None


def test_reminder_is_pushed_once_after_n_days_to_who_has_not_answered(campaign, staff, residents, queued_tasks):
    start = timezone.now()
    send(campaign, staff, queued_tasks)
    answer(residents["second"], NO)
    first = residents["first"].line_user_id
    pushed_before = OutboxMessage.objects.filter(line_user_id=first).count()
    with time_machine.travel(start + timedelta(days=2, hours=23)):
        assert campaigns.campaign_reminders_send().pushed == 0
    with time_machine.travel(start + timedelta(days=3, hours=1)):
        run = campaigns.campaign_reminders_send()
        assert (run.pushed, run.unreachable) == (1, 0)
        assert campaigns.campaign_reminders_send().pushed == 0  # once
    assert OutboxMessage.objects.filter(line_user_id=first).count() == pushed_before + 1
    assert OutboxMessage.objects.filter(line_user_id=residents["second"].line_user_id).count() == 1
    assert "給付金のご案内への回答がまだのようです。" in queued_text(first)
    assert recipient_of(campaign, residents["first"]).reminded_at is not None
    # The reminder's buttons work (they carry a new token).
    assert "申請を受け付けました" in answer(residents["first"], YES)


def test_the_deadline_closes_the_campaign(campaign, staff, residents, queued_tasks):
    send(campaign, staff, queued_tasks)
    with time_machine.travel(campaign.deadline + timedelta(hours=1)):
        campaigns.campaign_reminders_send()
        with pytest.raises(campaigns.CampaignRefused):
            campaigns.campaign_send_start(campaign=campaign, actor=staff)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CLOSED


def test_results_csv_has_every_row_in_japanese_neutralised_and_is_audited(
    campaign, staff, residents, queued_tasks, client
):
    send(campaign, staff, queued_tasks)
    answer(residents["first"], YES)
    answer(residents["second"], NO)
    client.force_login(staff)
    response = client.get(reverse("admin:broadcasts_campaign_export", args=[campaign.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    content = response.content.decode("utf-8")
    assert content.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(content[1:])))
    receipt = Application.objects.get().receipt_number
    assert rows[0] == ["行番号", "照合キー", "照合", "回答", "回答日時", "受付番号", "送信日時", "再通知日時"]
    assert [row[:4] + [row[5]] for row in rows[1:]] == [
        ["2", "A001", "照合済み", "はい", receipt],
        ["3", "A002", "照合済み", "いいえ", ""],
        ["4", "A003", "照合済み", "未回答", ""],
        ["5", "'=HYPERLINK(1)", "該当する住民なし", "", ""],
    ]
    entry = AuditEntry.objects.get(action=audit_actions.CAMPAIGN_EXPORT)
    assert entry.actor == staff and entry.details == {"rows": 4}

    page = client.get(reverse("admin:broadcasts_campaign_change", args=[campaign.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "該当する住民なし" in html and receipt in html


def test_another_department_cannot_see_send_or_export_and_a_viewer_cannot_export(
    campaign, staff, residents, other_department, department, client
):
    outsider = staff_of(other_department, username="tax_staff")
    client.force_login(outsider)
    for name in ("change", "export", "import"):
        assert client.get(reverse(f"admin:broadcasts_campaign_{name}", args=[campaign.pk])).status_code == 404
    assert client.post(reverse("admin:broadcasts_campaign_send", args=[campaign.pk])).status_code == 404
    with pytest.raises(campaigns.CampaignRefused):
        campaigns.campaign_results_export(campaign=campaign, actor=outsider)
    with pytest.raises(campaigns.CampaignRefused):
        campaigns.campaign_send_start(campaign=campaign, actor=outsider)

    viewer = staff_of(department, role=Role.DEPARTMENT_VIEWER, username="welfare_viewer")
    client.force_login(viewer)
    assert client.get(reverse("admin:broadcasts_campaign_change", args=[campaign.pk])).status_code == 200
    assert client.get(reverse("admin:broadcasts_campaign_export", args=[campaign.pk])).status_code == 403
    assert not AuditEntry.objects.filter(action=audit_actions.CAMPAIGN_EXPORT).exists()


def test_resident_taps_yes_through_the_signed_webhook(campaign, staff, residents, queued_tasks, client, fake_line):
    """End to end: the push arrives on the fake LINE, the resident taps 「申請する」, LINE posts the
    signed webhook, the inbox worker answers with the receipt number."""
    send(campaign, staff, queued_tasks)
    phone = LinePhone(client, fake_line, residents["first"].line_user_id)
    messaging_services.outbox_send()
    phone.last = fake_line.messages_sent_to(phone.user)
    phone.seen = len(phone.last)
    received = phone.tap(YES)
    application = Application.objects.get()
    assert application.status.code == "completed" and application.line_user_id == phone.user
    assert f"受付番号：{application.receipt_number}" in phone.texts() and "現在の状態：完了" in phone.texts()
    assert all("A001" not in str(message) for message in received)
    # One answer: the reply says it all, no status notice follows it.
    messaging_services.outbox_send()
    assert len(received) == 1 and fake_line.messages_sent_to(phone.user)[phone.seen - 1 :] == received
    # A forged postback (not signed by this channel) changes nothing.
    phone.send(
        postback_event(phone.user, '1.forged.["m","campaign:1:x","","campaign_yes",""]', reply_token=phone.token())
    )
    assert Application.objects.count() == 1
