"""Issue 6, "Done when": in the resident simulator a resident sets 受信設定, joins a segment,
receives a scheduled broadcast, and answers a benefit yes/no that turns into an application staff
can see and export.

Everything goes the real way: the simulator's endpoints (signed webhooks to this server), inbox,
workers, engine, outbox, the broadcast scheduler, preparer and chunk sender, and the fake LINE
validating every request.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from broadcasts import campaigns, sending, services
from broadcasts.models import Broadcast, BroadcastRun, Campaign, CampaignRecipient
from broadcasts.tests.campaign_world import FIXED_ANSWERS, NO, QUESTION, YES, benefit_procedure
from messaging.tests.test_resident_simulator import browser, webhook_posts  # noqa: F401 (fixtures)
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    LinePhone,
    line_channel,
    user_id,
    wakeups,
)
from procedures.demo import load_demo
from procedures.models import Application
from procedures.tests.factories import StaffUserFactory
from residents.models import ProfileChange, Resident, Segment
from residents.segments import segment_residents
from staff.models import Department, Role, StaffMembership


def _staff(department: Department, username: str):
    user = StaffUserFactory(username=username, is_superuser=False)
    StaffMembership.objects.create(user=user, role=Role.DEPARTMENT_STAFF, department=department)
    return user


@pytest.mark.django_db(transaction=True)
def test_resident_sets_receive_settings_gets_a_scheduled_broadcast_and_applies_by_yes(
    browser,  # noqa: F811 (the imported fixture)
    fake_line,
    monkeypatch,
):
    monkeypatch.setattr(campaigns, "async_task", lambda *args, **kwargs: None)  # the test runs the tasks itself
    load_demo()
    department = Department.objects.create(code="kosodate", name="子育て支援課")
    staff = _staff(department, "kosodate-staff")
    other = LinePhone(Client(), fake_line, user_id(67))  # follows, never sets 受信設定, lives nowhere known

    # 1. In the simulator: follow, then 受信設定: 子育て, 牛津町.
    browser.ok("follow", {"if_new": True})
    browser.run_pipeline()
    phone = browser
    other.follow()
    phone.say("受信設定")
    phone.tap("子育て")
    phone.tap("選択完了")
    phone.tap("牛津町")
    phone.tap("この内容で申し込む")
    resident = Resident.objects.get(line_user_id=phone.user)
    assert set(resident.categories.values_list("key", flat=True)) == {"kosodate"}
    assert resident.attribute_values.get(attribute__key="district").value_text == "ushizu"
    assert ProfileChange.objects.filter(resident=resident, source=ProfileChange.Source.PROCEDURE).count() == 2

    # 2. A segment: residents of 牛津町 who chose 子育て.
    segment = Segment.objects.create(
        name="牛津町の子育て世帯",
        department=department,
        rules={
            "match": "all",
            "rules": [
                {"type": "category", "op": "chose", "category": "kosodate"},
                {"type": "attribute", "attribute": "district", "op": "equals", "value": "ushizu"},
            ],
        },
    )
    assert list(segment_residents(segment)) == [resident]

    # 3. A broadcast to the segment, scheduled for tomorrow 18:00, sent by the workers when due.
    send_at = timezone.localtime().replace(hour=18, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    broadcast = Broadcast.objects.create(
        title="子育て応援フェアのお知らせ",
        department=department,
        messages=[{"kind": "text", "text": "子育て応援フェアを開きます。詳しくは市のホームページをご覧ください。"}],
        audience=Broadcast.Audience.SEGMENT,
        segment=segment,
        send_at=send_at,
        created_by=staff,
    )
    services.broadcast_submit(broadcast_id=broadcast.pk, user=staff)
    assert services.broadcast_runs_due(now=timezone.now()) == []  # not yet
    with time_machine.travel(send_at + dt.timedelta(seconds=30), tick=False):
        [run_id] = services.broadcast_runs_due(now=timezone.now())
        sending.broadcast_run_prepare(run_id=run_id, now=timezone.now())
        sending.broadcast_chunks_send(now=timezone.now())
    run = BroadcastRun.objects.get(pk=run_id)
    assert (run.status, run.recipients_total, run.delivered) == (BroadcastRun.Status.DONE, 1, 1)
    assert any("子育て応援フェア" in m.get("text", "") for m in phone.run_pipeline())  # in the simulator's chat
    assert not any("子育て応援フェア" in m.get("text", "") for m in fake_line.messages_sent_to(other.user))

    # 4. A push-and-confirm benefit campaign: the eligible list matched by LINE user id, a yes/no push.
    campaign = Campaign.objects.create(
        name="子育て世帯臨時給付金 2026",
        department=department,
        procedure=benefit_procedure(department, "子育て世帯臨時給付金"),
        fixed_answers=dict(FIXED_ANSWERS),
        question=QUESTION,
        yes_label=YES,
        no_label=NO,
        deadline=timezone.now() + dt.timedelta(days=14),
        match_by=Campaign.MatchBy.LINE_USER_ID,
        key_column="LINEユーザーID",
        created_by=staff,
    )
    campaigns.recipients_import(campaign=campaign, raw=f"LINEユーザーID\n{phone.user}\n".encode(), actor=staff)
    campaigns.campaign_send_start(campaign=campaign, actor=staff)
    campaigns.campaign_push(campaign_id=campaign.pk)
    phone.run_pipeline()  # the simulator's poll shows the question
    received = phone.tap(YES)
    assert any("受付番号" in m.get("text", "") for m in received)

    application = Application.objects.get(procedure=campaign.procedure)
    assert application.resident == resident and application.answers == FIXED_ANSWERS
    assert CampaignRecipient.objects.get(campaign=campaign).answer == CampaignRecipient.Answer.YES

    # 5. Staff of the department see it in the inbox and export it.
    staff_client = Client()
    staff_client.force_login(staff)
    inbox = staff_client.get("/admin/procedures/application/", {"procedure__id__exact": campaign.procedure.pk})
    assert application.receipt_number in inbox.content.decode()
    export = staff_client.get("/procedures/exports/", {"procedure": campaign.procedure.pk, "download": "1"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert application.receipt_number in [row[0] for row in rows[1:]]
