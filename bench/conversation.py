"""Benchmark of the whole LINE pipeline: webhook → inbox → worker → engine → outbox → reply on the fake LINE.

Run from the project root (see bench/README.md for what the figures mean):

    .venv/bin/python -m bench.conversation                # full run, about 5 minutes
    .venv/bin/python -m bench.conversation --quick        # about 2 minutes, to check that it works
    .venv/bin/python -m bench.conversation --no-what-if   # without the what-if phases

Started by the benchmark, all on 127.0.0.1 and stopped at the end (also on Ctrl-C):

* the fake LINE platform (messaging.line.fakeline) in a thread of this process; it issues the
  reply tokens and records every reply, and this benchmark notes when each arrives;
* gunicorn `govtech.wsgi -w 2` (production settings, PostgreSQL, Redis broker) with the LINE API
  base URLs pointing at the fake;
* a django-q2 `qcluster` (Redis broker, Q_WORKERS workers) running the inbox workers and senders;
* gunicorn `bench.bare_webhook_app` with BENCH_BARE_REPLY_URL: the baseline (below).

Simulated residents go through the first steps of the bulky-garbage demo procedure, the way a
person does: each sends one event, waits for the reply, reads the buttons in it and taps the next
one (粗大ごみ → はい → タンス → 自転車 → 選択完了 → 1 → the date picker → 玄関前 → やめる → はい、やめます,
then again). Latency is event → reply: from just before the webhook is sent to the moment the
fake LINE has accepted the reply to that event's token.

Phases: fixed rate (100 events/s by default) for the pipeline and for the baseline; the highest
rate each sustains (a closed loop of residents, as fast as the replies come back); the pipeline
again at 80 % of that rate; then, with the qcluster stopped, one worker's tasks run under
cProfile in a child process to show where a worker's time goes; last, gunicorn and the qcluster
are restarted with two suggested changes patched in at run time (bench.webhook.WHAT_IF; no
project file is edited) and measured again.

Baseline: the bare WSGI app answering each event inside the request (signature, JSON, one INSERT,
one reply call to the fake LINE): the shortest path from an event to its reply with the same
server, database, fake LINE and load generator. What the pipeline adds to it is the cost of the
queue, the workers, the engine, the ORM and the outbox.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench import loadgen
from bench.engine import SAVEPOINT_PREFIXES, describe, load_average, print_table
from bench.webhook import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    QUEUE_KEY,
    ROOT,
    WEBHOOK_PATH,
    WHAT_IF,
    Children,
    CpuMeter,
    app_env,
    backend_pids,
    database_name,
    drop_database,
    free_port,
    gunicorn_argv,
    postback_event,
    print_machine,
    raise_on_sigterm,
    recreate_database,
    redis_client,
    running_clusters,
    text_event,
    user_id,
    wait_until_serving,
    webhook_request,
)

TARGET_EVENTS_PER_SECOND = 300.0
TARGET_P99_MS = 250.0
# One cycle of the bulky-garbage conversation's first steps: ("say", text) or ("tap", button label).
SCRIPT = (
    ("say", "粗大ごみ"),
    ("tap", "はい"),
    ("tap", "タンス（1,200円）"),
    ("tap", "自転車（400円）"),
    ("tap", "選択完了"),
    ("say", "1"),
    ("tap", "日付を選ぶ"),
    ("say", "玄関前"),
    ("tap", "やめる"),
    ("tap", "はい、やめます"),
)
CANCEL_STEP = 8  # ("tap", "やめる")
CONFIRM_CANCEL_STEP = 9


# procedures.demo.load_demo(), run in the benchmark's environment. Should it fail (a demo template
# that no longer validates), only the bulky-garbage procedure this benchmark needs is imported and
# published, the way load_demo() does it, and the run says so.
LOAD_DEMO = """
from procedures.demo import load_demo
try:
    load_demo()
except Exception as error:
    from django.conf import settings
    from django.db import transaction
    from procedures.demo import DEMO_DEPARTMENTS, DEMO_TEMPLATES
    from procedures.models import Procedure
    from procedures.services import procedure_import, version_publish
    from staff.models import Department
    template = next(t for t in DEMO_TEMPLATES if t.receipt_prefix == "SODAI")
    item = next(d for d in DEMO_DEPARTMENTS if d.code == template.department_code)
    department, _ = Department.objects.get_or_create(code=item.code, defaults={"name": item.name})
    if not Procedure.objects.filter(receipt_prefix="SODAI").exists():
        with transaction.atomic():
            procedure = procedure_import(
                raw=template.path.read_bytes(), max_bytes=settings.PROCEDURE_IMPORT_MAX_BYTES,
                department=department, receipt_prefix="SODAI",
            )
            version_publish(version=procedure.draft)
    print("load_demo() failed, so only the bulky-garbage demo was loaded:", str(error)[:300].replace(chr(10), " "))
"""


@dataclass(frozen=True)
class Plan:
    residents: int  # simulated residents of the fixed-rate phases
    warmup_seconds: float
    rate_seconds: float  # the fixed-rate phases (pipeline and baseline)
    saturation_seconds: float
    saturation_residents: int  # residents in the closed loop: enough to keep every worker busy
    sustainable_seconds: float  # the pipeline at 80 % of its saturation rate
    profile_events: int  # events processed under cProfile by one worker
    drain_seconds: float  # longest wait for the replies still due after a phase


FULL = Plan(
    residents=400,
    warmup_seconds=6.0,
    rate_seconds=25.0,
    saturation_seconds=20.0,
    saturation_residents=48,
    sustainable_seconds=20.0,
    profile_events=300,
    drain_seconds=60.0,
)
QUICK = Plan(
    residents=150,
    warmup_seconds=3.0,
    rate_seconds=8.0,
    saturation_seconds=8.0,
    saturation_residents=32,
    sustainable_seconds=6.0,
    profile_events=60,
    drain_seconds=30.0,
)


# --------------------------------------------------------------------------
# Residents: a LINE app each, reading the buttons of the last reply
# --------------------------------------------------------------------------


def actions_in(messages: list[dict]) -> list[dict]:
    """Every LINE action object in the messages (quick replies, Flex buttons, templates)."""
    found: list[dict] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "action" and isinstance(value, dict):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(messages)
    for message in messages:
        if isinstance(message, dict):
            found += (message.get("template") or {}).get("actions", [])
    return found


@dataclass
class Resident:
    number: int
    user: str
    step: int = 0
    messages: list = field(default_factory=list)
    token: str | None = None  # the reply token of the event in flight
    label: str = ""  # what the event in flight was
    phase: str = ""
    sent: float = 0.0  # perf_counter just before the webhook went out
    sent_wall: float = 0.0
    lost: bool = False  # no reply within the drain time: left out from then on


@dataclass(frozen=True)
class Answer:
    phase: str
    label: str
    token: str
    via: str  # "reply" or "push"
    sent: float  # perf_counter
    answered: float  # perf_counter
    sent_wall: float
    answered_wall: float

    @property
    def latency_ms(self) -> float:
        return (self.answered - self.sent) * 1e3


class Residents:
    """The residents of one server. Thread-safe: called by the load generator and the fake LINE."""

    def __init__(self, fake, count: int, *, templates: dict | None = None):
        self.fake = fake
        self.prefix = secrets.randbits(32)
        self.items = [Resident(n, user_id(self.prefix, n)) for n in range(count)]
        self.by_user = {resident.user: resident for resident in self.items}
        self.by_token: dict[str, Resident] = {}
        self.ready: deque[Resident] = deque()
        self.condition = threading.Condition()
        self.active = 0
        self.phase = "idle"
        self.answers: list[Answer] = []
        self.sent: Counter = Counter()
        self.failed: Counter = Counter()  # webhook not acknowledged (the event is sent again)
        self.anomalies = 0  # an expected button was missing: the resident cancelled and started over
        self.event_numbers = itertools.count()
        # The bare baseline answers with a canned text: its residents replay the events the
        # pipeline's residents sent at the same step (recorded here, shared with the baseline).
        self.replay = templates is not None
        self.templates: dict[int, tuple] = templates if templates is not None else {}

    # -- phases --------------------------------------------------------------------------------

    def begin(self, phase: str, active: int | None = None) -> None:
        with self.condition:
            self.phase = phase
            self.active = len(self.items) if active is None else min(active, len(self.items))
            self.ready = deque(r for r in self.items[: self.active] if r.token is None and not r.lost)

    def drain(self, timeout: float) -> tuple[float, int]:
        """Wait for the replies still due: (seconds waited, events given up on)."""
        start = time.perf_counter()
        with self.condition:
            self.condition.wait_for(lambda: not self.by_token, timeout=timeout)
            given_up = list(self.by_token.items())
            for token, resident in given_up:
                resident.lost, resident.token = True, None
                del self.by_token[token]
            self.phase = "idle"
        return time.perf_counter() - start, len(given_up)

    # -- the load generator's side -------------------------------------------------------------

    def next_event(self, index: int) -> loadgen.Request | None:
        """For run_rate: the next ready resident's event, or None when all are waiting."""
        with self.condition:
            if not self.ready:
                return None
            resident = self.ready.popleft()
        return self._send(resident)

    def next_event_waiting(self, index: int) -> loadgen.Request | None:
        """For run_concurrency (closed loop): wait a little for a resident to be ready."""
        with self.condition:
            if not self.condition.wait_for(lambda: self.ready, timeout=0.25):
                return None
            resident = self.ready.popleft()
        return self._send(resident)

    def _send(self, resident: Resident) -> loadgen.Request:
        token = self.fake.issue_reply_token(resident.user)
        event_id = f"01C{self.prefix:08X}{next(self.event_numbers):015d}"
        event, label = self._event(resident, event_id, token)
        request = webhook_request(event, tag=token)
        with self.condition:
            resident.token, resident.label, resident.phase = token, label, self.phase
            self.by_token[token] = resident
            self.sent[self.phase] += 1
            resident.sent_wall = time.time()
            resident.sent = time.perf_counter()
        return request

    def _event(self, resident: Resident, event_id: str, token: str) -> tuple[dict, str]:
        step = resident.step % len(SCRIPT)
        kind, value = SCRIPT[step]
        if self.replay:
            template = self.templates.get(step, ("text", value, None))
            if template[0] == "postback":
                return postback_event(resident.user, template[1], event_id, token, template[2]), value
            return text_event(resident.user, template[1], event_id, token), value
        if kind == "say":
            self.templates.setdefault(step, ("text", value, None))
            return text_event(resident.user, value, event_id, token), value
        action = next((a for a in reversed(actions_in(resident.messages)) if a.get("label") == value), None)
        if action is None:
            # Not where the script expected (a lost reply, a slow push): cancel and start over.
            with self.condition:
                self.anomalies += 1
            if step == CONFIRM_CANCEL_STEP:
                resident.step = 0
                return text_event(resident.user, SCRIPT[0][1], event_id, token), SCRIPT[0][1]
            resident.step = CANCEL_STEP
            return text_event(resident.user, "やめる", event_id, token), "やめる (recovery)"
        if action.get("type") == "message":
            return text_event(resident.user, action.get("text", value), event_id, token), value
        params = None
        if action.get("type") == "datetimepicker":
            params = {"date": action.get("initial") or datetime.now(UTC).date().isoformat()}
        self.templates.setdefault(step, ("postback", action.get("data", ""), params))
        return postback_event(resident.user, action.get("data", ""), event_id, token, params), value

    def acknowledged(self, sample: loadgen.Sample) -> None:
        """The webhook's answer: a failed one means no event was stored, so it is sent again."""
        if sample.ok:
            return
        with self.condition:
            resident = self.by_token.pop(sample.tag, None)
            self.failed[self.phase] += 1
            if resident is not None:
                resident.token = None
                self._requeue(resident)

    def _requeue(self, resident: Resident) -> None:
        if resident.number < self.active and not resident.lost:
            self.ready.append(resident)
            self.condition.notify_all()

    # -- the fake LINE's side ------------------------------------------------------------------

    def line_call(self, path: str, data: dict, answered: float, answered_wall: float) -> bool:
        """An accepted reply or push recorded by the fake LINE; False when it is not for these residents."""
        messages = data.get("messages") or []
        with self.condition:
            if path.endswith("/reply"):
                resident = self.by_token.pop(data.get("replyToken", ""), None)
                via = "reply"
                if resident is None:
                    return False
            elif path.endswith("/push"):
                resident = self.by_user.get(data.get("to", ""))
                if resident is None:
                    return False
                if resident.token is None:  # the rest of an answer already counted
                    resident.messages = resident.messages + messages
                    return True
                del self.by_token[resident.token]
                via = "push"
            else:
                return False
            self.answers.append(
                Answer(
                    resident.phase,
                    resident.label,
                    resident.token,
                    via,
                    resident.sent,
                    answered,
                    resident.sent_wall,
                    answered_wall,
                )
            )
            resident.messages, resident.token = messages, None
            resident.step = (resident.step + 1) % len(SCRIPT)
            self._requeue(resident)
            if not self.by_token:
                self.condition.notify_all()
            return True


class FakeLineRecorder:
    """Wraps the fake platform's request handler: hands accepted replies/pushes to the residents,
    and adds up the CPU time the fake spends (it stands in for LINE, not for our code)."""

    def __init__(self, fake):
        self.original = fake.platform.handle
        self.listeners: list[Residents] = []
        self.cpu = 0.0
        self.unmatched = 0  # replies to events already given up on
        self.lock = threading.Lock()
        fake.platform.handle = self.handle

    def handle(self, host, method, target, headers, body):
        cpu = time.thread_time()
        response, delay = self.original(host, method, target, headers, body)
        answered, answered_wall = time.perf_counter(), time.time()
        matched = True
        if method == "POST" and target.startswith("/v2/bot/message/") and 200 <= response.status < 300:
            try:
                data = json.loads(body)
            except ValueError:
                data = {}
            matched = any(residents.line_call(target, data, answered, answered_wall) for residents in self.listeners)
        with self.lock:
            self.cpu += time.thread_time() - cpu
            self.unmatched += not matched
        return response, delay


# --------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------


class Meter(CpuMeter):
    """CpuMeter, with the fake LINE's CPU (a stand-in for LINE, not our code) apart from the loader's."""

    def __init__(self, parts, recorder: FakeLineRecorder):
        super().__init__(parts)
        self.recorder = recorder

    def start(self) -> None:
        super().start()
        self.fake = self.recorder.cpu

    def stop(self) -> dict[str, float]:
        result = super().stop()
        result["fake LINE"] = self.recorder.cpu - self.fake
        result["load generator"] = result.pop("bench process") - result["fake LINE"]
        return result


@dataclass
class PhaseResult:
    name: str
    server: str  # "pipeline" or "bare"
    mode: str
    window: float  # seconds during which events were sent
    sent: int
    answers: list[Answer]
    answered_in_window: int
    acks: loadgen.Run
    drain_seconds: float
    given_up: int
    failed_acks: int
    cpu: dict[str, float]
    settle_seconds: float = 0.0
    queue_left: int = 0

    @property
    def latencies(self) -> list[float]:
        return [answer.latency_ms for answer in self.answers]

    @property
    def sustained(self) -> float:
        """Events answered per second while events were being sent."""
        return self.answered_in_window / self.window if self.window else 0.0

    def figures(self) -> dict[str, float]:
        values = self.latencies
        return {
            "p50": loadgen.percentile(values, 0.5),
            "p90": loadgen.percentile(values, 0.9),
            "p99": loadgen.percentile(values, 0.99),
            "max": max(values) if values else float("nan"),
        }


def run_phase(
    name: str,
    server: str,
    residents: Residents,
    target: loadgen.Target,
    meter: Meter,
    plan: Plan,
    *,
    rate: float | None,
    seconds: float,
    active: int | None = None,
    threads: int = 64,
) -> PhaseResult:
    """Fixed rate (rate given) or closed loop (rate None: every active resident as fast as answered)."""
    residents.begin(name, active)
    meter.start()
    if rate is not None:
        acks = loadgen.run_rate(
            target, residents.next_event, rate=rate, duration=seconds, threads=threads, on_done=residents.acknowledged
        )
        mode = f"{rate:g}/s"
    else:
        concurrency = min(threads, residents.active)
        acks = loadgen.run_concurrency(
            target,
            residents.next_event_waiting,
            concurrency=concurrency,
            duration=seconds,
            max_requests=10_000_000,
            on_done=residents.acknowledged,
        )
        mode = f"closed loop, {residents.active} residents"
    window_end = time.perf_counter()
    window = window_end - acks.started
    drained, given_up = residents.drain(plan.drain_seconds)
    cpu = meter.stop()
    answers = [answer for answer in residents.answers if answer.phase == name]
    return PhaseResult(
        name=name,
        server=server,
        mode=mode,
        window=window,
        sent=residents.sent[name],
        answers=answers,
        answered_in_window=sum(1 for answer in answers if answer.answered <= window_end),
        acks=acks,
        drain_seconds=drained,
        given_up=given_up,
        failed_acks=residents.failed[name],
        cpu=cpu,
    )


def stage_breakdown(conn, answers: Sequence[Answer]) -> list[list[str]]:
    """Where an event's time goes, from the timestamps the pipeline writes (wall clocks, one machine)."""
    tokens = {answer.token: answer for answer in answers if answer.via == "reply"}
    if not tokens:
        return []
    rows = conn.execute(
        """
        SELECT o.reply_token, i.received_at, i.processed_at, o.created_at, o.sent_at
        FROM messaging_outboxmessage o JOIN messaging_inboxevent i ON i.id = o.inbox_event_id
        WHERE o.sent_via = 'reply' AND o.reply_token = ANY(%s)
        """,
        (list(tokens),),
    ).fetchall()
    stages: dict[str, list[float]] = {
        "webhook: sent → inbox row written": [],
        "queue + worker: inbox row → event done (engine, outbox rows)": [],
        "commit + claim (in the worker; else sender task) → reply call starts": [],
        "reply call to the fake LINE (SDK, HTTP, fake validation)": [],
        "total (from these timestamps)": [],
    }
    for token, received, processed, _created, sent_at in rows:
        answer = tokens[token]
        if processed is None or sent_at is None:
            continue
        points = [answer.sent_wall, received.timestamp(), processed.timestamp(), sent_at.timestamp(), answer.answered_wall]
        for values, (a, b) in zip(list(stages.values())[:4], itertools.pairwise(points), strict=True):
            values.append((b - a) * 1e3)
        stages["total (from these timestamps)"].append((points[-1] - points[0]) * 1e3)
    return [
        [
            name,
            f"{loadgen.percentile(values, 0.5):.1f}",
            f"{loadgen.percentile(values, 0.9):.1f}",
            f"{loadgen.percentile(values, 0.99):.1f}",
            f"{sum(values) / len(values):.1f}" if values else "-",
        ]
        for name, values in stages.items()
    ]


# --------------------------------------------------------------------------
# One worker under cProfile (a child process: `--profile-child`, not for direct use)
# --------------------------------------------------------------------------

INTERESTING = ("messaging/", "procedures/", "django_q/", "linebot/", "redis/", "psycopg/", "django/db/", "urllib3/")


def profile_child(limit: int) -> int:
    """Run the queued tasks one by one, as one cluster worker would, half of them under cProfile.

    Pops django-q2's Redis list, runs each task's function, then `save_task` as the cluster's
    monitor does with every result. Tasks of each kind alternate between timed only (the clean
    figures: wall, CPU, SQL statements) and profiled (where the time goes). The profiler uses its
    default clock (wall time): waiting for PostgreSQL shows up as psycopg's `wait`.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "govtech.settings")
    import django

    django.setup()
    import importlib

    from django.db import close_old_connections, connection
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.monitor import save_task
    from django_q.signing import SignedPackage

    broker = get_broker()
    profile, monitor_profile = cProfile.Profile(), cProfile.Profile()
    timing: dict[str, list[tuple[float, float, int]]] = {}
    profiled: Counter = Counter()
    statements = [0]

    examples: dict[str, list[str]] = {}  # the statements of one timed task of each kind
    current: list[str] = []

    def count(execute, sql, params, many, context):
        if not sql.lstrip().upper().startswith(SAVEPOINT_PREFIXES):  # nested atomic blocks' bookkeeping
            statements[0] += 1
            current.append(sql)
        return execute(sql, params, many, context)

    def timed(name: str, work: Callable[[], object], profiler: cProfile.Profile | None):
        statements[0] = 0
        current.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        try:
            with connection.execute_wrapper(count):
                return work()
        finally:
            if profiler is not None:
                profiler.disable()
                profiled[name] += 1
            else:
                timing.setdefault(name, []).append((time.perf_counter() - wall, time.process_time() - cpu, statements[0]))
                examples.setdefault(name, list(current))

    done = 0
    idle_since = time.monotonic()
    while done < limit and time.monotonic() - idle_since < 3.0:
        item = broker.dequeue()
        if not item:
            continue
        idle_since = time.monotonic()
        task = SignedPackage.loads(item[0][1])
        module, _dot, name = task["func"].rpartition(".")
        function = getattr(importlib.import_module(module), name)
        use_profiler = (len(timing.get(name, [])) + profiled[name]) % 2 == 1

        def run(task=task, function=function):
            close_old_connections()  # as django-q2's worker does before each task
            return function(*task["args"], **task["kwargs"])

        result = timed(name, run, profile if use_profiler else None)
        task.update(result=result, success=True, stopped=timezone.now())
        # What django-q2's monitor process does with every result.
        timed("save_task (monitor)", lambda task=task: save_task(task, broker), monitor_profile if use_profiler else None)
        done += 1
    print(f"{done} tasks, one at a time, no other worker running; half of each kind timed, half profiled")
    rows = []
    per_event_wall = per_event_cpu = 0.0
    events = len(timing.get("process_user_inbox", [])) + profiled["process_user_inbox"]
    for name, values in sorted(timing.items()):
        wall = sum(v[0] for v in values) / len(values)
        cpu = sum(v[1] for v in values) / len(values)
        sql = sum(v[2] for v in values) / len(values)
        per_event = (len(values) + profiled[name]) / max(events, 1)
        per_event_wall, per_event_cpu = per_event_wall + wall * per_event, per_event_cpu + cpu * per_event
        rows.append([name, f"{per_event:.1f}", f"{wall * 1e3:.2f}", f"{cpu * 1e3:.2f}", f"{sql:.1f}"])
    print_table(["task", "per event", "wall ms", "CPU ms", "SQL statements"], rows)
    print("(SQL statements: without BEGIN, COMMIT and savepoints)")
    if events:
        print(f"per event: {per_event_wall * 1e3:.1f} ms wall, {per_event_cpu * 1e3:.1f} ms CPU in this process "
              f"(+ PostgreSQL's own CPU); one worker serially: {1 / per_event_wall:.0f} events/s")
    for name, sqls in sorted(examples.items()):
        # BEGIN/COMMIT are not statements Django's execute wrapper sees; transactions are marked by them.
        print(f"\nthe SQL of one {name} task ({len(sqls)} statements; BEGIN, COMMIT and savepoints not shown):")
        for sql in sqls:
            print("  " + describe(sql))
    stats = pstats.Stats(profile, stream=io.StringIO())
    profiled_events = max(profiled["process_user_inbox"], 1)
    print("\nthe tasks, by cumulative time (project code and the database/queue/HTTP libraries; wall time,")
    print("profiler overhead included: compare the rows with each other, not with the figures above):")
    _print_stats(stats, 32, cumulative=True, per_event=profiled_events)
    print("\nthe tasks, by own time (anywhere; psycopg's wait is the time PostgreSQL takes to answer):")
    _print_stats(stats, 15, cumulative=False, per_event=profiled_events)
    monitor_stats = pstats.Stats(monitor_profile, stream=io.StringIO())
    print("\nsave_task (the monitor; 2 tasks per event), by cumulative time:")
    _print_stats(monitor_stats, 10, cumulative=True, per_event=profiled_events)
    return 0


def _print_stats(stats: pstats.Stats, count: int, *, cumulative: bool, per_event: int) -> None:
    entries = []
    for (filename, line, function), (_cc, calls, own, cum, _callers) in stats.stats.items():
        path = filename.replace(str(ROOT) + os.sep, "")
        if "site-packages" in path:
            path = path.split("site-packages" + os.sep, 1)[1]
        elif path.startswith(sys.base_prefix):
            path = "stdlib:" + os.path.basename(path)
        if cumulative and not path.startswith(INTERESTING):
            continue
        entries.append((cum if cumulative else own, calls, own, cum, f"{path}:{line}({function})"))
    entries.sort(reverse=True)
    rows = [
        [where[:95], f"{calls / max(per_event, 1):.1f}", f"{own / max(per_event, 1) * 1e3:.3f}", f"{cum / max(per_event, 1) * 1e3:.3f}"]
        for _key, calls, own, cum, where in entries[:count]
    ]
    print_table(["function", "calls/event", "own ms/event", "cum ms/event"], rows)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


def wait_for_cluster(redis, child, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"qcluster exited with {child.process.returncode}:\n{child.tail()}")
        if running_clusters(redis):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the qcluster did not report in within {timeout:.0f} s:\n{child.tail()}")


def settle(child, timeout: float) -> float:
    """Wait until a process group is (nearly) idle: the cluster's monitor may still be saving the
    results of the last phase, and that CPU would be charged to the next one. Returns seconds waited."""
    from bench.webhook import cpu_seconds

    start = time.perf_counter()
    previous = cpu_seconds(groups=[child.pgid]).get(f"g{child.pgid}", 0.0)
    quiet = 0
    while time.perf_counter() - start < timeout:
        time.sleep(0.5)
        now = cpu_seconds(groups=[child.pgid]).get(f"g{child.pgid}", 0.0)
        quiet = quiet + 1 if now - previous < 0.05 else 0  # under 10 % of a core
        previous = now
        if quiet >= 2:
            break
    return time.perf_counter() - start


class Servers:
    """The processes of one run; the meters look them up when they read, so a restart is seen."""

    def __init__(self, args, env: dict[str, str], children: Children, redis, fake):
        self.args, self.env, self.children, self.redis, self.fake = args, env, children, redis, fake
        self.app = self.cluster = None
        self.app_target: loadgen.Target | None = None

    def start_pipeline(self, *, what_if: bool) -> None:
        port = free_port()
        app = "bench.webhook:what_if_application" if what_if else "govtech.wsgi"
        cluster = [sys.executable, "-m", "bench.conversation", "--what-if-qcluster"] if what_if else [
            sys.executable, "manage.py", "qcluster"]
        suffix = " what-if" if what_if else ""
        self.app = self.children.start("app" + suffix, gunicorn_argv(app, port, self.args.workers), self.env)
        self.cluster = self.children.start("qcluster" + suffix, cluster, self.env)
        wait_until_serving(self.app, port, "/healthz")
        wait_for_cluster(self.redis, self.cluster)
        self.app_target = loadgen.Target("127.0.0.1", port, WEBHOOK_PATH)

    def stop_pipeline(self) -> None:
        for child in (self.cluster, self.app):
            if child is not None:
                self.children.stop(child)
        self.app = self.cluster = None
        deadline = time.monotonic() + 10
        while running_clusters(self.redis) and time.monotonic() < deadline:
            time.sleep(0.2)  # the cluster's status keys expire within a few seconds


def run_conversation_benchmark(args: argparse.Namespace, plan: Plan) -> int:
    import psycopg

    from bench.bare_webhook_app import TABLE_SQL
    from messaging.line.fakeline import FakeLineServer
    from messaging.line.fakeline import server as fakeline_server

    sys.setswitchinterval(0.001)  # loader, fake LINE and bookkeeping threads share the GIL: keep waits short
    database_url, redis_url = args.database_url, args.redis_url
    name = database_name(database_url)
    redis = redis_client(redis_url)
    print_machine("Conversation pipeline benchmark" + (" (quick)" if args.quick else ""), database_url, redis)
    if running_clusters(redis):
        print("a django-q2 cluster already reports into this Redis db: stop it first")
        return 2
    redis.flushdb()
    started = time.perf_counter()
    # The fake answers in two writes (headers, body); with Nagle on, a kept-alive connection waits for
    # the client's delayed ACK (40 ms) on every call after the first. LINE does not do that to us.
    fakeline_server._Handler.disable_nagle_algorithm = True
    fake = FakeLineServer().start()
    recorder = FakeLineRecorder(fake)
    children = Children()
    monitor = None
    created = False  # the database is dropped at the end only if this run made it
    try:
        env = app_env(
            database_url,
            redis_url,
            LINE_API_BASE_URL=fake.url,
            LINE_API_DATA_BASE_URL=fake.data_url,
            Q_WORKERS=str(args.q_workers),
        )
        recreate_database(database_url, env)
        created = True
        demo = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", LOAD_DEMO],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        if demo.returncode:
            raise RuntimeError(f"load_demo failed:\n{demo.stdout[-2000:]}\n{demo.stderr[-2000:]}")
        for line in demo.stdout.splitlines():
            if line.startswith("load_demo() failed"):
                print(f"  note: {line}")
        monitor = psycopg.connect(database_url, autocommit=True)
        monitor.execute(TABLE_SQL)
        servers = Servers(args, env, children, redis, fake)
        bare_port = free_port()
        bare_env = {**env, "BENCH_DATABASE_URL": database_url, "BENCH_BARE_REPLY_URL": fake.url}
        bare = children.start("bare", gunicorn_argv("bench.bare_webhook_app", bare_port, args.workers), bare_env)
        servers.start_pipeline(what_if=False)
        wait_until_serving(bare, bare_port, WEBHOOK_PATH, method="POST")
        bare_target = loadgen.Target("127.0.0.1", bare_port, WEBHOOK_PATH)
        redis_pids = [pid for pid, comm, *_ in _processes() if comm == "redis-server"]
        app_meter = Meter(
            {
                "gunicorn": lambda: ([servers.app.pgid], []),
                "qcluster": lambda: ([servers.cluster.pgid], []),
                "postgres": lambda: ([], backend_pids(monitor, name)),
                "redis-server": lambda: ([], redis_pids),
            },
            recorder,
        )
        bare_meter = Meter(
            {
                "gunicorn": lambda: ([bare.pgid], []),
                "postgres": lambda: ([], backend_pids(monitor, name)),
                "redis-server": lambda: ([], redis_pids),
            },
            recorder,
        )
        pipeline = Residents(fake, plan.residents)
        baseline = Residents(fake, plan.residents, templates=pipeline.templates)
        recorder.listeners += [pipeline, baseline]
        print(
            f"\n  {plan.residents} residents per server; gunicorn -w {args.workers}; qcluster {args.q_workers} workers; "
            f"set up in {time.perf_counter() - started:.1f} s"
        )

        results: dict[str, PhaseResult] = {}

        def phase(name, server, *, rate, seconds, active=None) -> PhaseResult:
            residents, meter = (baseline, bare_meter) if server == "bare" else (pipeline, app_meter)
            target = bare_target if server == "bare" else servers.app_target
            result = run_phase(name, server, residents, target, meter, plan,
                               rate=rate, seconds=seconds, active=active)
            if server != "bare":
                result.settle_seconds = settle(servers.cluster, plan.drain_seconds)
                result.queue_left = redis.llen(QUEUE_KEY)
            results[name] = result
            figures = result.figures()
            print(f"  ... {name}: {result.sent} events sent, {len(result.answers)} answered, p50 {figures['p50']:.0f} ms, "
                  f"p99 {figures['p99']:.0f} ms, {result.sustained:.0f} answered/s", flush=True)
            fake.state.calls.clear()  # the fake keeps every call: keep its memory bounded
            return result

        # Warm-up (not reported): connections, imports, each process's parsed-spec cache; it also
        # records the events the baseline's residents replay.
        phase("warm-up", "pipeline", rate=25.0, seconds=plan.warmup_seconds)
        phase("warm-up bare", "bare", rate=25.0, seconds=plan.warmup_seconds / 2)
        phase("bare", "bare", rate=args.rate, seconds=plan.rate_seconds)
        phase("pipeline", "pipeline", rate=args.rate, seconds=plan.rate_seconds)
        phase("bare max", "bare", rate=None, seconds=plan.saturation_seconds, active=plan.saturation_residents)
        sat_app = phase("pipeline max", "pipeline", rate=None, seconds=plan.saturation_seconds,
                        active=plan.saturation_residents)
        phase("pipeline 80%", "pipeline", rate=max(5.0, round(0.8 * sat_app.sustained)),
              seconds=plan.sustainable_seconds)
        breakdowns = {key: stage_breakdown(monitor, results[key].answers) for key in ("pipeline", "pipeline 80%")}

        profile_text = ""
        if plan.profile_events and not args.no_profile:
            print("  ... profiling one worker", flush=True)
            children.stop(servers.cluster)
            # Every queued event is one resident's next step: the child finds them all in Redis.
            pipeline.begin("profile", active=plan.profile_events)
            loadgen.run_rate(
                servers.app_target, pipeline.next_event, rate=100.0, duration=plan.profile_events / 100.0 + 0.5,
                max_requests=plan.profile_events, threads=8, on_done=pipeline.acknowledged,
            )
            child = subprocess.run(
                [sys.executable, "-m", "bench.conversation", "--profile-child", str(plan.profile_events * 3)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
            )
            profile_text = child.stdout if child.returncode == 0 else (
                f"profile child failed:\n{child.stdout}\n{child.stderr[-3000:]}")
            pipeline.drain(plan.drain_seconds)

        if not args.no_what_if:
            print("  ... restarting gunicorn and the qcluster with the what-if patches", flush=True)
            servers.stop_pipeline()
            servers.start_pipeline(what_if=True)
            phase("warm-up what-if", "pipeline", rate=25.0, seconds=plan.warmup_seconds / 2)
            phase("what-if max", "pipeline", rate=None, seconds=plan.saturation_seconds,
                  active=plan.saturation_residents)
            phase("what-if", "pipeline", rate=args.rate, seconds=plan.rate_seconds)
            breakdowns["what-if"] = stage_breakdown(monitor, results["what-if"].answers)

        report(args, plan, results, breakdowns, pipeline, baseline, profile_text, recorder.unmatched)
        problems = [f"{child.name}: {line}" for child in children.items for line in child.error_lines()]
        if problems:
            print("\n  errors in the servers' output (last ones):")
            for line in problems:
                print(f"    {line[:300]}")
    finally:
        if monitor is not None:
            monitor.close()
        children.stop_all()
        fake.stop()
        redis.flushdb()
        dropped = created and not args.keep_database
        if dropped:
            drop_database(database_url)
        print(f"\n  Redis db flushed{', database dropped' if dropped else ''}; "
              f"total {time.perf_counter() - started:.1f} s, load average at the end {load_average()}")
    return 0


def what_if_qcluster() -> int:
    """`manage.py qcluster` with bench.webhook.apply_what_if() (a child process: --what-if-qcluster)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "govtech.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from bench.webhook import apply_what_if

    apply_what_if()
    call_command("qcluster")
    return 0


def _processes():
    from bench.webhook import _proc_stats

    return list(_proc_stats())


def _cpu_rows(phases: Sequence[PhaseResult]) -> list[list[str]]:
    names = ["gunicorn", "qcluster", "postgres", "redis-server", "fake LINE", "load generator"]
    rows = []
    for result in phases:
        events = max(1, len(result.answers))
        ours = sum(result.cpu.get(n, 0.0) for n in names[:4])
        rows.append(
            [result.name]
            + [f"{result.cpu[n] / events * 1e3:.2f}" if n in result.cpu else "-" for n in names]
            + [f"{ours / events * 1e3:.2f}", f"{result.cpu['machine busy %']:.0f} %"]
        )
    return rows


def report(args, plan, results, breakdowns, pipeline, baseline, profile_text, unmatched) -> None:
    header = ["phase", "load", "sent/s", "answered", "answered/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
              "no resident", "lost", "drain s", "settle s"]

    def row(result: PhaseResult) -> list[str]:
        figure = result.figures()
        pushes = sum(1 for a in result.answers if a.via == "push")
        return [
            result.name,
            result.mode,
            f"{result.sent / result.window:,.1f}",
            f"{len(result.answers):,}" + (f" ({pushes} push)" if pushes else ""),
            f"{result.sustained:,.1f}",
            f"{figure['p50']:.1f}",
            f"{figure['p90']:.1f}",
            f"{figure['p99']:.1f}",
            f"{figure['max']:.1f}",
            f"{result.acks.skipped}",
            f"{result.given_up}",
            f"{result.drain_seconds:.1f}",
            f"{result.settle_seconds:.1f}" if result.server != "bare" else "-",
        ]

    measured = [r for r in results.values() if not r.name.startswith("warm-up")]
    print(f"\n== Event → reply latency and throughput ({plan.residents} residents per server) ==")
    print_table(header, [row(r) for r in measured])
    print("  sent/s: events sent ÷ phase time (below the load when every resident was waiting for a reply:")
    print("  'no resident' counts those empty slots); answered/s: answered while the phase ran ÷ its time;")
    print("  lost: no reply within the drain time; drain: wait for the replies still due after the phase;")
    print("  settle: wait for the qcluster to go idle (its monitor still saving the phase's task results).")
    rate_app, rate_bare = results["pipeline"], results["bare"]
    sat_app, sat_bare = results["pipeline max"], results["bare max"]
    app_f, bare_f = rate_app.figures(), rate_bare.figures()
    print(
        f"\n  at {args.rate:g} events/s, pipeline vs bare: p50 {app_f['p50'] / bare_f['p50']:.0f}x, "
        f"p99 {app_f['p99'] / bare_f['p99']:.0f}x ({app_f['p50'] - bare_f['p50']:.0f} ms more at p50)"
    )
    best_app = max(sat_app.sustained, rate_app.sustained)
    print(
        f"  highest sustained (the better of the closed loop with {plan.saturation_residents} residents and the "
        f"{args.rate:g}/s phase): pipeline {best_app:.0f} events/s, bare {max(sat_bare.sustained, rate_bare.sustained):.0f} "
        f"events/s → {best_app / max(sat_bare.sustained, rate_bare.sustained, 1e-9):.2f}x"
    )
    acks = loadgen.summary(rate_app.acks)
    print(f"  the webhook's own answer during the pipeline's {args.rate:g}/s phase: p50 {acks['p50']:.1f} ms, "
          f"p99 {acks['p99']:.1f} ms{'' if not rate_app.failed_acks else f', {rate_app.failed_acks} not acknowledged'}")
    if "what-if" in results:
        what_if, what_if_max = results["what-if"], results["what-if max"]
        wf = what_if.figures()
        best_what_if = max(what_if.sustained, what_if_max.sustained)
        print(f"  what-if ({len(WHAT_IF)} patches, below): highest sustained {best_what_if:.0f} events/s "
              f"({best_what_if / max(best_app, 1e-9):.1f}x as is); at {args.rate:g}/s "
              f"p50 {wf['p50']:.0f} ms, p99 {wf['p99']:.0f} ms")
        for number, text in enumerate(WHAT_IF, start=1):
            print(f"    {number}. {text}")

    for key, rows in breakdowns.items():
        if rows:
            print(f"\n  where an event's time goes: {key} ({results[key].mode}; from the rows' timestamps, ms):")
            print_table(["stage", "p50", "p90", "p99", "mean"], rows)

    print("\n  CPU per answered event (ms; every process of each part, from /proc, from the phase's start until it")
    print("  settled; 'ours' = gunicorn + qcluster + postgres + redis; machine busy includes other people's work):")
    print_table(["phase", "gunicorn", "qcluster", "postgres", "redis", "fake LINE", "loadgen", "ours", "machine busy"],
                _cpu_rows(measured))

    anomalies = pipeline.anomalies + baseline.anomalies
    print(f"\n  script anomalies (a button was missing, the resident started over): {anomalies}; "
          f"replies after giving up: {unmatched}")
    by_label: dict[str, list[float]] = {}
    for answer in results["pipeline 80%"].answers:
        by_label.setdefault(answer.label, []).append(answer.latency_ms)
    print("  pipeline 80% by step (p50 / p99 ms): " + "; ".join(
        f"{label} {loadgen.percentile(v, 0.5):.0f}/{loadgen.percentile(v, 0.99):.0f}" for label, v in by_label.items()
    ))

    if profile_text:
        print("\n== One worker under cProfile (qcluster stopped; tasks run one at a time in a child process) ==")
        for line in profile_text.rstrip().splitlines():
            print("  " + line)

    print("\n== Targets ==")
    verdict = "met" if best_app >= TARGET_EVENTS_PER_SECOND else "NOT met"
    print(f"  ≥ {TARGET_EVENTS_PER_SECOND:g} events/s sustained: {best_app:.0f} events/s → {verdict}")
    verdict = "met" if app_f["p99"] < TARGET_P99_MS and not rate_app.given_up else "NOT met"
    print(f"  p99 < {TARGET_P99_MS:g} ms at {args.rate:g} events/s: {app_f['p99']:.0f} ms → {verdict}")
    sus = results["pipeline 80%"]
    verdict = "met" if sus.figures()["p99"] < TARGET_P99_MS else "NOT met"
    print(f"  (p99 at {sus.mode}, 80 % of the closed-loop rate: {sus.figures()['p99']:.0f} ms → {verdict})")
    if "what-if" in results:
        print(f"  (what-if: {best_what_if:.0f} events/s; p99 {what_if.figures()['p99']:.0f} ms at {args.rate:g} events/s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conversation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases, to check that it works")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s of the fixed-rate phases (default 100)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--q-workers", type=int, default=4, help="django-q2 cluster workers (default 4)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile phase")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and re-created: name must start with 'bench'")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed before and after (default db 3)")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--no-what-if", action="store_true", help="skip the what-if phases")
    parser.add_argument("--profile-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--what-if-qcluster", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile_child:
        return profile_child(args.profile_child)
    if args.what_if_qcluster:
        return what_if_qcluster()
    sys.dont_write_bytecode = True  # nothing written outside bench/ (children: PYTHONDONTWRITEBYTECODE)
    if args.rate <= 0 or not 1 <= args.q_workers <= 16:
        parser.error("rate must be positive, q-workers 1..16")
    raise_on_sigterm()
    try:
        return run_conversation_benchmark(args, QUICK if args.quick else FULL)
    except KeyboardInterrupt:
        print("\ninterrupted: servers, cluster and fake LINE stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
