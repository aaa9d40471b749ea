"""Every recipient gets a broadcast exactly once, even when a sender process is killed in the middle of a call.

Real worker processes (`manage.py broadcast_worker`) send the chunks to the fake LINE on the same test
database. The fake answers 429 and 500 on the way, then takes one chunk's multicast but holds back its
answer: the worker is killed with SIGKILL while it waits. A second worker sends the chunk again once
its lease has run out, with the same retry key; the fake answers 409 and delivers nothing twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import TestCase

from broadcasts import sending
from broadcasts.models import Broadcast, BroadcastChunk
from broadcasts.tests.sending_world import (  # noqa: F401 (autouse fixtures)
    MULTICAST,
    delivered_to,
    ids,
    line_token,
    residents,
    run_for,
    wakeups,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-channel-access-token"
LEASE_SECONDS = "2"
POLL_SECONDS = 0.05
STALL_SECONDS = 25  # the held-back answer: far longer than the test waits before killing the worker


@pytest.fixture
def worker_database(transactional_db, tmp_path):
    """A DATABASE_URL for worker processes: this test's database.

    On PostgreSQL that is the test database itself. SQLite's test database lives in this process's
    memory, so for this test the connection is moved to a file copy of it (schema included), and back
    afterwards.
    """
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        user = quote(settings_dict["USER"] or "", safe="")
        password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict["PASSWORD"] else ""
        host, port = settings_dict["HOST"] or "localhost", settings_dict["PORT"] or 5432
        yield f"postgres://{user}{password}@{host}:{port}/{quote(settings_dict['NAME'], safe='')}"
        return
    path = tmp_path / "db.sqlite3"
    connection.ensure_connection()
    in_memory = connection.connection
    copy = sqlite3.connect(path)
    in_memory.backup(copy)
    copy.close()
    name = settings_dict["NAME"]
    connection.connection = None  # the in-memory database stays open through `in_memory`
    settings_dict["NAME"] = str(path)
    try:
        yield f"sqlite:///{path}"
    finally:
        connection.close()
        settings_dict["NAME"] = name
        connection.connection = in_memory


@pytest.fixture
def start_worker(worker_database, fake_line, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GOVTECH_", "DATABASE_", "LINE_", "Q_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="govtech.settings",
        GOVTECH_TESTING="1",
        GOVTECH_VAR_DIR=str(tmp_path),
        DATABASE_URL=worker_database,
        LINE_API_BASE_URL=fake_line.url,
        LINE_API_DATA_BASE_URL=fake_line.data_url,
        LINE_CHANNEL_ACCESS_TOKEN=TOKEN,
        LINE_API_TIMEOUT_SECONDS="60",  # the held-back answer must not end in a time-out first
    )
    processes = []

    def start(*options: str) -> subprocess.Popen:
        log = open(tmp_path / f"worker{len(processes) + 1}.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
            [
                sys.executable,
                "manage.py",
                "broadcast_worker",
                "--lease-seconds",
                LEASE_SECONDS,
                "--poll-seconds",
                str(POLL_SECONDS),
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append((process, log))
        return process

    yield start
    for process, log in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()


def wait_until(condition, what: str, *, worker: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before {what}; see its log in the tmp_path")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(POLL_SECONDS)


def test_a_sender_killed_mid_multicast_and_429_500_on_the_way_still_deliver_to_everyone_exactly_once(
    fake_line, start_worker
):
    people = residents(1200)
    run = run_for(audience=Broadcast.Audience.EVERYONE)
    with TestCase.captureOnCommitCallbacks(execute=True):
        sending.broadcast_run_prepare(run_id=run.pk)
    assert run.chunks.count() == 3
    fake_line.fail_next(429, path_prefix=MULTICAST, headers={"Retry-After": "1"})
    fake_line.fail_next(500, path_prefix=MULTICAST, headers={"Retry-After": "1"})
    fake_line.delay_next(0, times=3, path_prefix=MULTICAST)  # 429, 500, then a chunk answered at once ...
    fake_line.delay_next(STALL_SECONDS, path_prefix=MULTICAST)  # ... and the fourth call taken but not answered

    first = start_worker()
    wait_until(lambda: len(fake_line.calls(MULTICAST)) >= 4, "the fourth multicast reached LINE", worker=first)
    calls = fake_line.calls(MULTICAST)
    assert [call.status for call in calls] == [429, 500, 200, 200]
    in_flight = run.chunks.get(retry_key=calls[3].headers["x-line-retry-key"])
    assert in_flight.status == BroadcastChunk.Status.SENDING  # LINE took it; the worker is waiting for the answer
    assert run.chunks.filter(status=BroadcastChunk.Status.SENT).count() == 1
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)

    second = start_worker("--until-idle")
    assert second.wait(timeout=120) == 0

    received = Counter(delivered_to(fake_line))
    assert set(received) == set(ids(people)) and set(received.values()) == {1}
    resent = [
        call for call in fake_line.calls(MULTICAST) if call.headers["x-line-retry-key"] == str(in_flight.retry_key)
    ]
    taken, known = [call for call in resent if call.status in (200, 409)]
    assert (taken.status, known.status) == (200, 409)
    run.refresh_from_db()
    assert (run.status, run.delivered, run.failed) == ("done", 1200, 0)
    assert run.broadcast.status == Broadcast.Status.SENT
    in_flight.refresh_from_db()
    assert (in_flight.status, in_flight.line_request_id) == ("sent", taken.request_id)
