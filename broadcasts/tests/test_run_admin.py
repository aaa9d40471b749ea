"""The runs' admin: read-only, a live progress endpoint, only for the broadcast's own department."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone

from broadcasts import sending
from broadcasts.models import Broadcast
from broadcasts.tests.sending_world import MULTICAST, line_token, residents, run_for, wakeups  # noqa: F401
from procedures.tests.factories import DepartmentFactory, StaffUserFactory
from residents.tests.factories import CategoryFactory
from staff.models import Role, StaffMembership

pytestmark = pytest.mark.django_db


def staff_of(department, role=Role.DEPARTMENT_VIEWER) -> Client:
    user = StaffUserFactory(is_superuser=False)
    StaffMembership.objects.create(user=user, role=role, department=department)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def department():
    return DepartmentFactory(name="防災課")


@pytest.fixture
def run(department, fake_line, settings):
    """1,001 recipients in three chunks: the first sent, the third refused by LINE, the second waiting."""
    bousai, kosodate = CategoryFactory(key="bousai"), CategoryFactory(key="kosodate")
    residents(1001, categories=[bousai])
    residents(2, following=False)
    residents(3, categories=[kosodate])
    run = run_for(department, audience=Broadcast.Audience.EVERYONE, category=bousai)
    with TestCase.captureOnCommitCallbacks(execute=True):
        sending.broadcast_run_prepare(run_id=run.pk)
    # One multicast a second: each second one chunk goes, the next waits.
    settings.LINE_RATE_LIMITS = {**django_settings.LINE_RATE_LIMITS, "multicast": 1}
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        sending.broadcast_chunks_send()  # the first chunk is sent
    fake_line.fail_next(400, path_prefix=MULTICAST, body={"message": "The property, 'to', is invalid"})
    with time_machine.travel(now + timedelta(seconds=1), tick=False):
        sending.broadcast_chunks_send()  # the third (due first) is refused; the second waits again
    return run


def progress(client: Client, run):
    return client.get(reverse("admin:broadcasts_broadcastrun_progress", args=[run.pk]))


def test_the_progress_endpoint_counts_delivered_failed_skipped_and_lists_the_chunks(department, run):
    answer = progress(staff_of(department), run)
    assert answer.status_code == 200 and "no-store" in answer["Cache-Control"]
    data = answer.json()
    assert {key: data[key] for key in ("status", "total", "delivered", "failed", "remaining", "percent")} == {
        "status": "sending",
        "total": 1001,
        "delivered": 500,
        "failed": 1,
        "remaining": 500,
        "percent": 50,
    }
    assert (data["skipped_blocked"], data["skipped_opted_out"], data["finished"]) == (2, 3, False)
    chunks = [(c["number"], c["status"], c["recipients"], c["last_error"]) for c in data["chunks"]]
    assert chunks == [
        (1, "sent", 500, ""),
        (2, "pending", 500, ""),
        (3, "failed", 1, "400: The property, 'to', is invalid"),
    ]
    assert "line_user_ids" not in str(data) and "U0" not in str(data)  # no recipients in the page's data


def test_the_run_page_shows_the_progress_bar_and_where_to_poll(department, run):
    page = staff_of(department).get(reverse("admin:broadcasts_broadcastrun_change", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="broadcast-run-progress"' in html and "<progress" in html
    assert reverse("admin:broadcasts_broadcastrun_progress", args=[run.pk]) in html
    assert "broadcasts/run_progress.js" in html and "The property, &#x27;to&#x27;, is invalid" in html


def test_another_departments_staff_see_neither_the_run_nor_its_progress(run):
    outsider = staff_of(DepartmentFactory(name="子育て支援課"), Role.DEPARTMENT_STAFF)
    assert progress(outsider, run).status_code == 404
    assert outsider.get(reverse("admin:broadcasts_broadcastrun_change", args=[run.pk])).status_code == 404
    listing = outsider.get(reverse("admin:broadcasts_broadcastrun_changelist"))
    assert listing.status_code == 200 and "防災訓練" not in listing.content.decode()


def test_runs_are_read_only_even_for_their_departments_staff(department, run):
    staff = staff_of(department, Role.DEPARTMENT_STAFF)
    assert staff.get(reverse("admin:broadcasts_broadcastrun_add")).status_code == 403
    assert (
        staff.post(reverse("admin:broadcasts_broadcastrun_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
    )
    page = staff.get(reverse("admin:broadcasts_broadcastrun_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in page
