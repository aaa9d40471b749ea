"""Submitting, approving, sending back and cancelling broadcasts, and turning due occurrences into runs."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest
from django.db import connection

from audit import actions
from audit.models import AuditEntry
from broadcasts import sending, services
from broadcasts.models import Broadcast, BroadcastChunk, BroadcastRun
from broadcasts.schedule import TOKYO
from broadcasts.tests.composing import member
from procedures.tests.factories import DepartmentFactory
from residents.models import Category, Segment

NOW = datetime(2026, 12, 20, 9, 0, tzinfo=TOKYO)  # a Sunday
TEXT = [{"kind": "text", "text": "年末のごみ収集のお知らせ"}]


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "async_task", lambda func, *args: calls.append((func, *args)))
    return calls


@pytest.fixture
def env(db):
    department = DepartmentFactory(name="環境課", code="env")
    other = DepartmentFactory(name="福祉課", code="welfare")
    author, _ = member("author", department)
    colleague, _ = member("colleague", department)
    outsider, _ = member("outsider", other)
    return {"department": department, "other": other, "author": author, "colleague": colleague, "outsider": outsider}


def seen(broadcast: Broadcast):
    """What the approver's page showed: the broadcast as it is now."""
    return Broadcast.objects.get(pk=broadcast.pk).updated_at


def draft(env, **fields) -> Broadcast:
    values = {"title": "年末のお知らせ", "department": env["department"], "messages": TEXT, "created_by": env["author"]}
    return Broadcast.objects.create(**{**values, **fields})


def test_submit_without_approval_schedules_at_the_send_time_and_is_audited(env):
    broadcast = draft(env, send_at=NOW + timedelta(hours=3))

    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.next_run_at) == ("scheduled", NOW + timedelta(hours=3))
    entry = AuditEntry.objects.get(action=actions.BROADCAST_SUBMIT)
    assert (entry.actor, entry.department_id, entry.object_id) == (
        env["author"],
        env["department"].pk,
        str(broadcast.pk),
    )


def test_submit_lists_every_problem_and_changes_nothing(env):
    broadcast = draft(env, messages=[], audience="segment", recurrence="weekly", send_at=None)

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    assert refused.value.messages == [
        "メッセージを1つ以上作ってください。",
        "配信先のセグメントを選んでください。",
        "繰り返す配信は、最初の配信日時を入力してください。",
        "毎週の配信は、曜日を選んでください。",
    ]
    broadcast.refresh_from_db()
    assert broadcast.status == "draft" and not AuditEntry.objects.filter(action=actions.BROADCAST_SUBMIT).exists()


def test_another_departments_segment_cannot_be_the_audience(env):
    theirs = Segment.objects.create(name="福祉課の対象", department=env["other"])
    city_wide = Segment.objects.create(name="全庁", department=None)
    broadcast = draft(env, audience="segment", segment=theirs)

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    assert refused.value.messages == ["このセグメントには配信できません（ほかの部署のセグメントです）。"]

    Broadcast.objects.filter(pk=broadcast.pk).update(segment=city_wide)
    assert services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW).status == "scheduled"


def test_category_audience_needs_a_category(env):
    broadcast = draft(env, audience="category")
    with pytest.raises(services.BroadcastRefused):
        services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    Broadcast.objects.filter(pk=broadcast.pk).update(category=Category.objects.create(key="bousai", name="防災"))
    assert services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW).status == "scheduled"


@pytest.mark.parametrize("emergency", [False, True])
def test_a_department_that_requires_approval_gets_it_for_every_broadcast_whatever_the_draft_says(env, emergency):
    env["department"].broadcasts_need_approval = True
    env["department"].save()
    broadcast = draft(env, requires_approval=False, is_emergency=emergency)

    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.requires_approval, broadcast.next_run_at) == ("awaiting_approval", True, None)
    with pytest.raises(services.BroadcastRefused):  # and not by its author
        services.broadcast_approve(broadcast_id=broadcast.pk, seen_updated_at=seen(broadcast), user=env["author"])
    # Sent back and unticked by the author, it still needs approval when submitted again.
    services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["author"])
    Broadcast.objects.filter(pk=broadcast.pk).update(requires_approval=False)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    assert Broadcast.objects.get(pk=broadcast.pk).status == "awaiting_approval"


def test_the_creator_cannot_approve_their_own_broadcast(env):
    broadcast = draft(env, requires_approval=True)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_approve(
            broadcast_id=broadcast.pk, seen_updated_at=seen(broadcast), user=env["author"], now=NOW
        )

    assert refused.value.messages == ["自分で作成した一斉配信は承認できません。ほかの職員に承認を依頼してください。"]
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.next_run_at) == ("awaiting_approval", None)


def test_a_second_staff_member_approves_and_it_is_audited(env):
    broadcast = draft(env, requires_approval=True)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    services.broadcast_approve(
        broadcast_id=broadcast.pk,
        seen_updated_at=seen(broadcast),
        user=env["colleague"],
        now=NOW + timedelta(minutes=30),
    )

    broadcast.refresh_from_db()
    assert broadcast.status == "scheduled" and broadcast.approved_by == env["colleague"]
    assert broadcast.next_run_at == NOW + timedelta(minutes=30)  # "send now", approved half an hour later
    assert AuditEntry.objects.filter(action=actions.BROADCAST_APPROVE, actor=env["colleague"]).count() == 1


def test_approval_is_refused_when_the_broadcast_changed_after_the_approver_read_it(env):
    broadcast = draft(env, requires_approval=True)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    read_by_approver = seen(broadcast)
    # Meanwhile the author withdraws it, changes the text and asks again.
    services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["author"])
    Broadcast.objects.filter(pk=broadcast.pk).update(messages=[{"kind": "text", "text": "別の内容"}])
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_approve(
            broadcast_id=broadcast.pk, user=env["colleague"], seen_updated_at=read_by_approver, now=NOW
        )

    assert refused.value.messages == [
        "表示した後にこの一斉配信が変更されました。最新の内容を確かめてから、もう一度承認してください。"
    ]
    assert Broadcast.objects.get(pk=broadcast.pk).status == "awaiting_approval"
    assert not AuditEntry.objects.filter(action=actions.BROADCAST_APPROVE).exists()
    services.broadcast_approve(broadcast_id=broadcast.pk, user=env["colleague"], seen_updated_at=seen(broadcast))
    assert Broadcast.objects.get(pk=broadcast.pk).status == "scheduled"


def test_staff_of_another_department_cannot_approve(env):
    broadcast = draft(env, requires_approval=True)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    with pytest.raises(services.BroadcastRefused):
        services.broadcast_approve(
            broadcast_id=broadcast.pk, seen_updated_at=seen(broadcast), user=env["outsider"], now=NOW
        )
    assert Broadcast.objects.get(pk=broadcast.pk).status == "awaiting_approval"


def test_cancelling_a_repeating_broadcast_stops_future_occurrences_and_unstarted_runs(env, queued):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=1), recurrence="daily")
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    [run_id] = services.broadcast_runs_due(now=NOW + timedelta(minutes=2))

    services.broadcast_cancel(broadcast_id=broadcast.pk, user=env["colleague"])

    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.next_run_at) == ("cancelled", None)
    assert BroadcastRun.objects.get(pk=run_id).status == "cancelled"
    assert services.broadcast_runs_due(now=NOW + timedelta(days=3)) == []
    entry = AuditEntry.objects.get(action=actions.BROADCAST_CANCEL)
    assert entry.details == {"previous_status": "scheduled", "cancelled_runs": 1}


def test_a_sent_broadcast_cannot_be_cancelled(env, queued):
    broadcast = draft(env)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    services.broadcast_runs_due(now=NOW)
    assert Broadcast.objects.get(pk=broadcast.pk).status == "sending"

    with pytest.raises(services.BroadcastRefused):
        services.broadcast_cancel(broadcast_id=broadcast.pk, user=env["author"])


def test_the_approver_sends_a_broadcast_back_with_a_reason_and_the_author_corrects_and_resubmits(env):
    broadcast = draft(env, requires_approval=True)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    services.broadcast_return_to_draft(
        broadcast_id=broadcast.pk, user=env["colleague"], reason="  日付が1日ずれています。  "
    )

    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.returned_reason, broadcast.approved_by) == (
        "draft",
        "日付が1日ずれています。",
        None,
    )
    entry = AuditEntry.objects.get(action=actions.BROADCAST_RETURN)
    assert (entry.actor, entry.details) == (
        env["colleague"],
        {"previous_status": "awaiting_approval", "cancelled_runs": 0, "with_reason": True},
    )
    services.broadcast_messages_update(broadcast_id=broadcast.pk, messages=TEXT * 2, user=env["author"])
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.returned_reason) == ("awaiting_approval", "")


def test_withdrawing_a_scheduled_repeating_broadcast_drops_its_approval_and_unstarted_runs(env, queued):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=1), recurrence="daily", requires_approval=True)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    services.broadcast_approve(
        broadcast_id=broadcast.pk, seen_updated_at=seen(broadcast), user=env["colleague"], now=NOW
    )
    [run_id] = services.broadcast_runs_due(now=NOW + timedelta(minutes=2))

    services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["author"])

    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.next_run_at, broadcast.approved_at, broadcast.returned_reason) == (
        "draft",
        None,
        None,
        "",
    )
    assert BroadcastRun.objects.get(pk=run_id).status == "cancelled"
    assert services.broadcast_runs_due(now=NOW + timedelta(days=3)) == []
    assert AuditEntry.objects.get(action=actions.BROADCAST_RETURN).details["cancelled_runs"] == 1
    # Submitted again, it needs a new approval.
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW + timedelta(days=3))
    assert Broadcast.objects.get(pk=broadcast.pk).status == "awaiting_approval"


@pytest.mark.parametrize("status", ["draft", "sending", "sent", "cancelled", "refused"])
def test_only_a_broadcast_awaiting_approval_or_scheduled_goes_back_to_draft(env, status):
    broadcast = draft(env, status=status)

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["author"])

    assert refused.value.messages == ["承認待ちまたは配信予約済みの一斉配信だけ、下書きに戻せます。"]
    assert Broadcast.objects.get(pk=broadcast.pk).status == status
    assert not AuditEntry.objects.filter(action=actions.BROADCAST_RETURN).exists()


def test_a_repeating_broadcast_with_a_run_sending_is_not_sent_back(env, queued):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=1), recurrence="daily")
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    [run_id] = services.broadcast_runs_due(now=NOW + timedelta(minutes=2))
    BroadcastRun.objects.filter(pk=run_id).update(status="sending", started_at=NOW + timedelta(minutes=2))

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["author"])

    assert refused.value.messages == ["配信中のため下書きに戻せません。配信が終わってから操作してください。"]
    assert Broadcast.objects.get(pk=broadcast.pk).status == "scheduled"


def test_sending_back_is_refused_to_other_departments_and_for_an_overlong_reason(env):
    broadcast = draft(env, requires_approval=True)
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    with pytest.raises(services.BroadcastRefused):
        services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["outsider"])
    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["colleague"], reason="あ" * 501)

    assert refused.value.messages == ["差し戻しの理由は500文字以内で入力してください。"]
    assert Broadcast.objects.get(pk=broadcast.pk).status == "awaiting_approval"
    assert not AuditEntry.objects.filter(action=actions.BROADCAST_RETURN).exists()


def test_due_occurrence_becomes_one_run_with_frozen_messages_handed_to_the_preparing_task(
    env, queued, django_capture_on_commit_callbacks
):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=5))
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    assert services.broadcast_runs_due(now=NOW) == []  # not yet

    with django_capture_on_commit_callbacks(execute=True):
        created = services.broadcast_runs_due(now=NOW + timedelta(minutes=5))

    run = BroadcastRun.objects.get()
    assert created == [run.pk] and run.scheduled_for == NOW + timedelta(minutes=5)
    assert run.line_messages == [{"type": "text", "text": "年末のごみ収集のお知らせ"}]
    assert queued == [("broadcasts.tasks.broadcast_run_prepare_task", run.pk)]
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.next_run_at) == ("sending", None)
    assert services.broadcast_runs_due(now=NOW + timedelta(minutes=6)) == []  # a second tick: nothing new


def test_weekly_broadcast_moves_to_its_next_tuesday_skipping_the_new_year(env, queued):
    broadcast = draft(
        env,
        send_at=datetime(2026, 12, 22, 18, 0, tzinfo=TOKYO),
        recurrence="weekly",
        recurrence_weekdays=[1],
        excluded_dates=["2026-12-29", "2026-12-30", "2026-12-31", "2027-01-01"],
        recurrence_until=date(2027, 1, 12),
    )
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    services.broadcast_runs_due(now=datetime(2026, 12, 22, 18, 0, 30, tzinfo=TOKYO))
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.next_run_at) == ("scheduled", datetime(2027, 1, 5, 18, 0, tzinfo=TOKYO))

    services.broadcast_runs_due(now=datetime(2027, 1, 5, 18, 1, tzinfo=TOKYO))
    services.broadcast_runs_due(now=datetime(2027, 1, 12, 18, 1, tzinfo=TOKYO))
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.next_run_at) == ("sending", None)  # the 12th was the last
    assert [run.scheduled_for.astimezone(TOKYO).date() for run in BroadcastRun.objects.order_by("scheduled_for")] == [
        date(2026, 12, 22),
        date(2027, 1, 5),
        date(2027, 1, 12),
    ]


def test_a_worker_that_was_down_sends_the_latest_occurrence_once_not_every_missed_one(env, queued):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=1), recurrence="daily")
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    services.broadcast_runs_due(now=NOW + timedelta(days=3, hours=1))

    assert BroadcastRun.objects.count() == 1
    broadcast.refresh_from_db()
    assert broadcast.next_run_at == NOW + timedelta(days=4, minutes=1)


def test_an_occurrence_that_already_has_its_run_is_not_created_twice(env, queued, django_capture_on_commit_callbacks):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=1), recurrence="daily")
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        services.broadcast_runs_due(now=NOW + timedelta(minutes=1))
    # The state a broadcast would be in had its next occurrence been reset to one already run.
    Broadcast.objects.filter(pk=broadcast.pk).update(next_run_at=NOW + timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert services.broadcast_runs_due(now=NOW + timedelta(minutes=2)) == []
    assert BroadcastRun.objects.count() == 1 and len(queued) == 1


def test_messages_that_became_unsendable_refuse_the_broadcast_instead_of_failing_every_minute(env, queued):
    broadcast = draft(env, messages=[{"kind": "image", "image": "a" * 32 + ".png"}])
    Broadcast.objects.filter(pk=broadcast.pk).update(status="scheduled", next_run_at=NOW)

    assert services.broadcast_runs_due(now=NOW) == []

    broadcast.refresh_from_db()
    assert broadcast.status == "refused" and "画像が見つかりません" in broadcast.refused_reason
    assert not BroadcastRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_the_same_time_create_each_run_once(queued):
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL (SQLite has no row locks)")
    department = DepartmentFactory(name="環境課", code="env")
    author, _ = member("author", department)
    for number in range(6):
        Broadcast.objects.create(
            title=f"お知らせ{number}", department=department, messages=TEXT, status="scheduled", next_run_at=NOW
        )
    barrier = threading.Barrier(2)
    results = {}

    def worker(name):
        try:
            barrier.wait(timeout=10)
            results[name] = services.broadcast_runs_due(now=NOW)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    created = results["first"] + results["second"]
    assert len(created) == len(set(created)) == 6
    assert BroadcastRun.objects.count() == 6
    assert set(Broadcast.objects.values_list("status", flat=True)) == {"sending"}


def in_thread(results: dict, name: str, work) -> threading.Thread:
    """Run `work` in a thread with its own database connection; its result (or exception) in `results`."""

    def run():
        try:
            results[name] = work()
        except Exception as error:  # reported by the test
            results[name] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def until_a_session_waits_for_a_lock() -> None:
    with connection.cursor() as cursor:
        for _attempt in range(300):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            threading.Event().wait(0.05)


@pytest.mark.django_db(transaction=True)
def test_sending_back_while_the_preparer_starts_the_run_waits_for_it_and_is_refused(queued, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    department = DepartmentFactory(name="環境課", code="env")
    author, _ = member("author", department)
    broadcast = Broadcast.objects.create(
        title="毎日のお知らせ",
        department=department,
        messages=TEXT,
        created_by=author,
        send_at=NOW + timedelta(minutes=1),
        recurrence="daily",
    )
    services.broadcast_submit(broadcast_id=broadcast.pk, user=author, now=NOW)
    [run_id] = services.broadcast_runs_due(now=NOW + timedelta(minutes=2))
    run_locked, go_on = threading.Event(), threading.Event()
    create_chunks = BroadcastChunk.objects.bulk_create

    def held_bulk_create(*args, **kwargs):
        run_locked.set()  # the preparer holds the run's row lock now
        assert go_on.wait(timeout=30)
        return create_chunks(*args, **kwargs)

    monkeypatch.setattr(BroadcastChunk.objects, "bulk_create", held_bulk_create)
    results = {}
    recipients = sending.Recipients(["U" + "1" * 32], 0, 0)
    preparer = in_thread(
        results, "preparer", lambda: sending._run_start(run_id, recipients, NOW + timedelta(minutes=2))
    )
    assert run_locked.wait(timeout=30)
    sender_back = in_thread(
        results, "return", lambda: services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=author)
    )
    until_a_session_waits_for_a_lock()
    go_on.set()
    preparer.join(timeout=30)
    sender_back.join(timeout=30)

    assert results["preparer"] == "sending"
    assert isinstance(results["return"], services.BroadcastRefused)
    assert results["return"].messages == ["配信中のため下書きに戻せません。配信が終わってから操作してください。"]
    assert Broadcast.objects.get(pk=broadcast.pk).status == "scheduled"
    assert BroadcastRun.objects.get(pk=run_id).status == "sending"


@pytest.mark.django_db(transaction=True)
def test_two_preparers_starting_at_once_count_each_others_chunks_against_the_quota(queued, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    department = DepartmentFactory(name="環境課", code="env")
    runs = [
        BroadcastRun.objects.create(
            broadcast=Broadcast.objects.create(title=title, department=department, messages=TEXT, status="sending"),
            scheduled_for=NOW,
        )
        for title in ("防災訓練", "断水のお知らせ")
    ]
    first_checked, go_on = threading.Event(), threading.Event()
    create_chunks = BroadcastChunk.objects.bulk_create

    def held_bulk_create(chunks, *args, **kwargs):
        chunks = list(chunks)
        if chunks[0].run_id == runs[0].pk:
            first_checked.set()  # the first preparer passed the quota check and holds the channel's row
            assert go_on.wait(timeout=30)
        return create_chunks(chunks, *args, **kwargs)

    monkeypatch.setattr(BroadcastChunk.objects, "bulk_create", held_bulk_create)
    recipients = sending.Recipients(["U" + str(n) * 32 for n in range(1, 4)], 0, 0)
    results = {}
    # Both read LINE's quota before either queued anything: 5 left, and 3 fit for each alone.
    first = in_thread(results, "first", lambda: sending._run_start(runs[0].pk, recipients, NOW, 5))
    assert first_checked.wait(timeout=30)
    second = in_thread(results, "second", lambda: sending._run_start(runs[1].pk, recipients, NOW, 5))
    until_a_session_waits_for_a_lock()  # the second waits for the channel's row
    go_on.set()
    first.join(timeout=30)
    second.join(timeout=30)

    assert (results["first"], results["second"]) == ("sending", "refused")
    assert "今月の残り 2 通" in BroadcastRun.objects.get(pk=runs[1].pk).refused_reason


@pytest.fixture
def stale_look_at_runs(monkeypatch):
    """Staff's look at the runs finds none: the scheduler's new run committed just after it."""
    real = services._locked_with_active_runs
    monkeypatch.setattr(services, "_locked_with_active_runs", lambda broadcast_id: (real(broadcast_id)[0], []))


@pytest.mark.parametrize(
    ("stop", "status"), [("broadcast_cancel", "cancelled"), ("broadcast_return_to_draft", "draft")]
)
def test_a_run_created_while_staff_stopped_the_broadcast_is_cancelled_by_the_preparer_not_sent(
    env, queued, stale_look_at_runs, stop, status
):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=1), recurrence="daily")
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    [run_id] = services.broadcast_runs_due(now=NOW + timedelta(minutes=2))
    getattr(services, stop)(broadcast_id=broadcast.pk, user=env["author"])
    assert BroadcastRun.objects.get(pk=run_id).status == "pending"  # missed by staff's look

    assert sending.broadcast_run_prepare(run_id=run_id, now=NOW + timedelta(minutes=2)) == "cancelled"
    assert not BroadcastChunk.objects.filter(run_id=run_id).exists()
    assert Broadcast.objects.get(pk=broadcast.pk).status == status


def test_sending_back_is_refused_when_a_run_started_after_its_look_at_the_runs(env, queued, stale_look_at_runs):
    broadcast = draft(env, send_at=NOW + timedelta(minutes=1), recurrence="daily")
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    [run_id] = services.broadcast_runs_due(now=NOW + timedelta(minutes=2))
    sending._run_start(run_id, sending.Recipients(["U" + "1" * 32], 0, 0), NOW + timedelta(minutes=2))

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_return_to_draft(broadcast_id=broadcast.pk, user=env["author"])

    assert refused.value.messages == ["配信中のため下書きに戻せません。配信が終わってから操作してください。"]
    assert Broadcast.objects.get(pk=broadcast.pk).status == "scheduled"
    assert BroadcastRun.objects.get(pk=run_id).status == "sending"


def test_a_segment_edited_after_submission_does_not_change_who_the_approved_broadcast_reaches(env):
    north = {"match": "all", "rules": [{"type": "category", "op": "chose", "category": "kita"}]}
    segment = Segment.objects.create(name="北地区", department=env["department"], rules=north)
    broadcast = draft(
        env,
        audience=Broadcast.Audience.SEGMENT,
        segment=segment,
        requires_approval=True,
        send_at=NOW + timedelta(days=1),
    )
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)

    segment.rules = {"match": "all", "rules": [{"type": "follow", "op": "following"}]}  # widened to everyone
    segment.save()
    services.broadcast_approve(
        broadcast_id=broadcast.pk, seen_updated_at=seen(broadcast), user=env["colleague"], now=NOW
    )

    broadcast.refresh_from_db()
    assert broadcast.segment_rules == north  # what was submitted is what was approved, and what runs send to


def test_the_approver_needs_to_reach_the_audience_too(env):
    theirs = Segment.objects.create(
        name="環境課の対象",
        department=env["department"],
        rules={"match": "all", "rules": [{"type": "follow", "op": "following"}]},
    )
    broadcast = draft(
        env,
        audience=Broadcast.Audience.SEGMENT,
        segment=theirs,
        requires_approval=True,
        send_at=NOW + timedelta(days=1),
    )
    services.broadcast_submit(broadcast_id=broadcast.pk, user=env["author"], now=NOW)
    theirs.department = env["other"]
    theirs.save()

    with pytest.raises(services.BroadcastRefused) as refused:
        services.broadcast_approve(
            broadcast_id=broadcast.pk, seen_updated_at=seen(broadcast), user=env["colleague"], now=NOW
        )
    assert "ほかの部署のセグメント" in refused.value.messages[0]
