"""Benchmark of the LINE webhook's acknowledgement, against a bare WSGI baseline in the same run.

Run from the project root (see bench/README.md for what the figures mean):

    .venv/bin/python -m bench.webhook                # full run, about 2 minutes
    .venv/bin/python -m bench.webhook --quick        # about 30 s, to check that it works
    .venv/bin/python -m bench.webhook --no-what-if   # without the what-if server

Two gunicorn servers with the same settings (`-w 2`, sync workers, 127.0.0.1):

* app: `govtech.wsgi`, the production code path (GOVTECH_TESTING unset, PostgreSQL, Redis broker):
  middleware, signature check, body checks, one INSERT statement storing the InboxEvent rows, and
  after it one django-q2 wake-up per resident pushed into Redis. No qcluster runs, so the
  wake-ups stay in the Redis list (pushing them is part of the cost); they are counted, checked
  and flushed at the end.
* bare: `bench.bare_webhook_app`, signature check + JSON parse + one INSERT per request (psycopg,
  autocommit, a plain table): the least a webhook that stores what it received must do.

* what-if: govtech.wsgi with one suggested change patched in at run time (WHAT_IF[0]: the wake-ups
  reuse one Redis connection per process); no project file is edited.

Each request is a signed webhook with one text message event (unique webhookEventId), from one
of 200 users. The servers are driven at a fixed concurrency in rounds of rotating order (so all
see the same machine load), then at a fixed moderate rate to show the latency without queueing.

This module also holds what bench.conversation shares: the machine description, the disposable
database, child processes in their own process groups, LINE webhook bodies and CPU accounting.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import itertools
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench import loadgen
from bench.engine import cpu_model, load_average, print_table, redact

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_line"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"
CHANNEL_SECRET = "bench-line-channel-secret"
ACCESS_TOKEN = "bench-line-channel-access-token"
DESTINATION = "U" + "b" * 32
QUEUE_KEY = "django_q:govtech:q"  # django-q2's Redis list for the cluster named "govtech"
CLUSTER_STAT_PATTERN = "django_q:govtech:cluster:*"  # a running qcluster refreshes these every few seconds
WEBHOOK_PATH = "/line/webhook/"
TARGET_ACK_RATIO = 0.8
TARGET_ACK_P99_MS = 50.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------


def postgres_version(database_url: str) -> str:
    import psycopg

    maintenance = urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    return f"PostgreSQL {version} (synchronous_commit={commit})"


def redis_version(client) -> str:
    return f"Redis {client.info('server').get('redis_version', '?')}"


def print_machine(title: str, database_url: str, redis_client) -> None:
    import gunicorn

    print(title)
    print(f"  CPU:      {cpu_model()}, {os.cpu_count()} cores (shared: compare ratios, not absolute figures)")
    print(f"  System:   {platform.system()} {platform.release()}")
    print(f"  Python:   {platform.python_implementation()} {platform.python_version()}, gunicorn {gunicorn.__version__}")
    print(f"  Database: {postgres_version(database_url)} at {redact(database_url)}")
    print(f"  Broker:   {redis_version(redis_client)} at {redact(redis_url_of(redis_client))}")
    print(f"  Load:     {load_average()} (1/5/15 min)")


def redis_url_of(client) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"


# --------------------------------------------------------------------------
# Child processes: each in its own process group, stopped with everything it started
# --------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the benchmark dies (Linux; best effort)."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Child:
    """A child process in a new session (its own process group); output kept in memory only."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]):
        self.name = name
        self.lines: deque[str] = deque(maxlen=300)
        self.errors = 0  # output lines that look like a failure
        self.process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # only os.setsid and prctl: safe enough before exec
        )
        self.pgid = self.process.pid
        self._reader = threading.Thread(target=self._drain, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if "Traceback" in line or " ERROR " in line or "CRITICAL" in line:
                self.errors += 1
            self.lines.append(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, count: int = 15) -> str:
        return "\n".join(f"    {self.name}| {line}" for line in list(self.lines)[-count:])

    def error_lines(self, count: int = 5) -> list[str]:
        found = [line for line in self.lines if "Traceback" in line or " ERROR " in line or "CRITICAL" in line]
        return found[-count:]

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole group, then SIGKILL to what is left after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.pgid):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=0.1)
            if not _group_alive(self.pgid):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)
        self._reader.join(timeout=2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of the group still count for killpg: look for a live member.
    return any(stat[2] != "Z" for stat in _proc_stats() if stat[4] == pgid)


class Children:
    """Every child started by a benchmark; all stopped on exit (normal, error or Ctrl-C)."""

    def __init__(self) -> None:
        self.items: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env)
        self.items.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.items:
            self.items.remove(child)

    def stop_all(self) -> None:
        for child in reversed(self.items):
            child.stop()
        self.items.clear()


def raise_on_sigterm() -> None:
    """A `kill` of the benchmark unwinds like Ctrl-C, so the finally blocks stop the children."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`&`)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_argv(app: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", app, "-w", str(workers), "-b", f"127.0.0.1:{port}"]


def wait_until_serving(child: Child, port: int, path: str, method: str = "GET", timeout: float = 30.0) -> None:
    """Until an HTTP answer (any status) comes back on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{child.tail()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request(method, path, body=b"" if method == "POST" else None)
            connection.getresponse().read()
            connection.close()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer on port {port} within {timeout:.0f} s:\n{child.tail()}")


def app_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The production settings path: GOVTECH_TESTING and the demo switches unset."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GOVTECH_", "Q_", "LINE_"))}
    for key in ("DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"):
        env.pop(key, None)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LINE_CHANNEL_SECRET=CHANNEL_SECRET,
        LINE_CHANNEL_ACCESS_TOKEN=ACCESS_TOKEN,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        # A fresh key per run: the database is created for the run and dropped after it.
        GOVTECH_ENCRYPTION_KEYS=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE="0",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


# --------------------------------------------------------------------------
# The disposable database
# --------------------------------------------------------------------------


def _maintenance_url(database_url: str) -> str:
    return urlsplit(database_url)._replace(path="/postgres").geturl()


def database_name(database_url: str) -> str:
    name = urlsplit(database_url).path.lstrip("/")
    if not name.startswith("bench"):
        raise SystemExit(f"refusing to use database {name!r}: the benchmark drops it, so its name must start with 'bench'")
    return name


def recreate_database(database_url: str, env: dict[str, str]) -> None:
    """DROP (if there), CREATE, migrate: every run starts with the same empty tables."""
    import psycopg
    from psycopg import sql

    name = database_name(database_url)
    with psycopg.connect(_maintenance_url(database_url), autocommit=True, connect_timeout=5) as conn:
        busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]
        if busy:
            raise SystemExit(f"database {name} has {busy} open connection(s): is another benchmark running?")
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def drop_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = database_name(database_url)
    with psycopg.connect(_maintenance_url(database_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def backend_pids(conn, name: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
    ).fetchall()
    return [row[0] for row in rows]


# --------------------------------------------------------------------------
# CPU accounting (from /proc: user + system time, including reaped children)
# --------------------------------------------------------------------------


def _proc_stats() -> Iterator[tuple]:
    """(pid, comm, state, ppid, pgrp, utime+stime+cutime+cstime seconds) of every process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                raw = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        comm_end = raw.rfind(")")
        fields = raw[comm_end + 2 :].split()
        ticks = sum(int(value) for value in fields[11:15])
        yield int(entry.name), raw[raw.find("(") + 1 : comm_end], fields[0], int(fields[1]), int(fields[2]), ticks / CLOCK_TICKS


def cpu_seconds(*, groups: Sequence[int] = (), pids: Sequence[int] = ()) -> dict[str, float]:
    """CPU seconds used so far by the members of process groups, and by single processes."""
    wanted_groups, wanted_pids = set(groups), set(pids)
    result: dict[str, float] = {}
    for pid, _comm, _state, _ppid, pgrp, seconds in _proc_stats():
        if pgrp in wanted_groups:
            result[f"g{pgrp}"] = result.get(f"g{pgrp}", 0.0) + seconds
        if pid in wanted_pids:
            result[f"p{pid}"] = seconds
    return result


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU used by our processes during a window: `start()`, then `stop()` -> seconds per part.

    A part is a callable giving (process groups, single pids), asked at both ends: a process that
    appears during the window (a new PostgreSQL backend: Django reconnects every CONN_MAX_AGE
    seconds; a recycled worker) counts whole; one that exits during it is missed. Groups include
    the children their members have reaped (cutime/cstime).
    """

    def __init__(self, parts: dict[str, Callable[[], tuple[Sequence[int], Sequence[int]]]]):
        self.parts = parts

    def _read(self) -> dict[str, dict]:
        wanted = {name: part() for name, part in self.parts.items()}
        groups = {g for gs, _ in wanted.values() for g in gs}
        pids = {p for _, ps in wanted.values() for p in ps}
        by_group: dict[int, float] = {}
        by_pid: dict[int, float] = {}
        for pid, _comm, _state, _ppid, pgrp, seconds in _proc_stats():
            if pgrp in groups:
                by_group[pgrp] = by_group.get(pgrp, 0.0) + seconds
            if pid in pids:
                by_pid[pid] = seconds
        return {
            name: {"groups": {g: by_group.get(g, 0.0) for g in gs}, "pids": {p: by_pid[p] for p in ps if p in by_pid}}
            for name, (gs, ps) in wanted.items()
        }

    def start(self) -> None:
        self._before = self._read()
        self._own = time.process_time()
        self._busy = machine_busy()
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        after = self._read()
        result = {}
        for name, now in after.items():
            then = self._before.get(name, {"groups": {}, "pids": {}})
            seconds = sum(value - then["groups"].get(g, 0.0) for g, value in now["groups"].items())
            seconds += sum(value - then["pids"].get(p, 0.0) for p, value in now["pids"].items())
            result[name] = seconds
        result["bench process"] = time.process_time() - self._own
        busy, total = machine_busy()
        result["machine busy %"] = 100.0 * (busy - self._busy[0]) / max(1, total - self._busy[1])
        result["wall"] = time.perf_counter() - self._wall
        return result


# --------------------------------------------------------------------------
# LINE webhook bodies
# --------------------------------------------------------------------------


def sign(body: bytes, secret: str = CHANNEL_SECRET) -> str:
    """X-Line-Signature: base64(HMAC-SHA256(channel secret, raw body))."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def user_id(prefix: int, number: int) -> str:
    """A LINE-shaped user id ("U" + 32 hex digits), distinct per run prefix and number."""
    return f"U{prefix:08x}{number:024x}"


_message_ids = itertools.count(800_000_000_000_000_001)


def line_event(kind: str, user: str, event_id: str, reply_token: str, **fields) -> dict:
    return {
        "type": kind,
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": user},
        "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False},
        "replyToken": reply_token,
        **fields,
    }


def text_event(user: str, text: str, event_id: str, reply_token: str) -> dict:
    message = {"id": str(next(_message_ids)), "type": "text", "quoteToken": "q" + event_id, "text": text}
    return line_event("message", user, event_id, reply_token, message=message)


def postback_event(user: str, data: str, event_id: str, reply_token: str, params: dict | None = None) -> dict:
    postback: dict = {"data": data}
    if params:
        postback["params"] = params
    return line_event("postback", user, event_id, reply_token, postback=postback)


def webhook_request(*events: dict, tag=None) -> loadgen.Request:
    body = json.dumps({"destination": DESTINATION, "events": list(events)}, ensure_ascii=False).encode("utf-8")
    return loadgen.Request(body=body, headers={"X-Line-Signature": sign(body)}, tag=tag)


# --------------------------------------------------------------------------
# Redis (db 3 belongs to the benchmark)
# --------------------------------------------------------------------------


def redis_client(redis_url: str):
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    client.ping()
    return client


def running_clusters(client) -> int:
    return sum(1 for _key in client.scan_iter(match=CLUSTER_STAT_PATTERN, count=500))


# --------------------------------------------------------------------------
# What-if: two suggested changes, applied as runtime patches inside the benchmark's own servers
# (nothing in the project is edited; the figures show what the changes would be worth)
# --------------------------------------------------------------------------

WHAT_IF = (
    "one Redis connection per process for the wake-ups (async_task(..., broker=<kept broker>)) "
    "instead of a new client, connection and handshake per call",
    "django-q2 save_limit = -1 (successful tasks are not saved; failures still are) instead of the "
    "default 250, whose pruning locks and loads up to 250 Success rows for every task result",
)


def apply_what_if() -> None:
    """Patch the running process (Django set up): see WHAT_IF."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.tasks import async_task

    from messaging import services

    brokers: dict[int, object] = {}

    def delay(func, *args) -> None:
        pid = os.getpid()  # one per process: the qcluster forks its workers after this patch
        broker = brokers.get(pid)
        if broker is None:
            broker = brokers[pid] = get_broker()
        async_task(func, *args, broker=broker)

    services._delay = delay
    Conf.SAVE_LIMIT = -1


_what_if_app = None


def what_if_application(environ, start_response):
    """govtech.wsgi with apply_what_if(): `gunicorn bench.webhook:what_if_application`."""
    global _what_if_app
    if _what_if_app is None:
        from govtech.wsgi import application

        apply_what_if()
        _what_if_app = application
    return _what_if_app(environ, start_response)


# --------------------------------------------------------------------------
# The webhook benchmark
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rounds: int  # alternating rounds per server at fixed concurrency
    round_seconds: float
    warmup_seconds: float
    rate_seconds: float  # the fixed-rate latency run, per server


FULL = Plan(rounds=4, round_seconds=8.0, warmup_seconds=2.0, rate_seconds=8.0)
QUICK = Plan(rounds=1, round_seconds=4.0, warmup_seconds=1.0, rate_seconds=3.0)


class WebhookLoad:
    """Signed webhooks, one text event each, with unique event ids, spread over `users` users."""

    def __init__(self, users: int):
        self.prefix = secrets.randbits(32)
        self.users = [user_id(self.prefix, n) for n in range(users)]
        self.numbers = itertools.count()
        self.lock = threading.Lock()

    def __call__(self, index: int) -> loadgen.Request:
        with self.lock:
            number = next(self.numbers)
        user = self.users[number % len(self.users)]
        event_id = f"01B{self.prefix:08X}{number:015d}"  # ULID-shaped, 26 characters
        return webhook_request(text_event(user, "粗大ごみ", event_id, secrets.token_hex(16)), tag=user)


@dataclass
class Measured:
    name: str
    run: loadgen.Run
    cpu: dict[str, float]


def _cpu_per_request_ms(measured: Sequence[Measured], part: str) -> float:
    requests = sum(len(m.run.ok) for m in measured)
    return 1e3 * sum(m.cpu.get(part, 0.0) for m in measured) / max(1, requests)


def _merge(runs: Sequence[loadgen.Run]) -> loadgen.Run:
    merged = loadgen.Run(runs[0].mode, runs[0].started, runs[-1].stopped, sum(r.window for r in runs))
    for run in runs:
        merged.samples.extend(run.samples)
        merged.skipped += run.skipped
        merged.late += run.late
    return merged


SERVERS = {  # label -> (title, WSGI application)
    "app": ("app (govtech.wsgi)", "govtech.wsgi"),
    "what-if": ("app, what-if patch 1", "bench.webhook:what_if_application"),
    "bare": ("bare WSGI baseline", "bench.bare_webhook_app"),
}


def run_webhook_benchmark(args: argparse.Namespace, plan: Plan) -> int:
    import psycopg

    from bench.bare_webhook_app import TABLE_SQL

    database_url, redis_url = args.database_url, args.redis_url
    name = database_name(database_url)
    redis = redis_client(redis_url)
    print_machine("Webhook ack benchmark" + (" (quick)" if args.quick else ""), database_url, redis)
    if running_clusters(redis):
        print("a django-q2 cluster reports into this Redis db: stop it first (the ack benchmark needs none)")
        return 2
    redis.flushdb()
    env = app_env(database_url, redis_url)
    started = time.perf_counter()
    recreate_database(database_url, env)
    children = Children()
    monitor = psycopg.connect(database_url, autocommit=True)
    labels = [label for label in SERVERS if label != "what-if" or not args.no_what_if]
    try:
        monitor.execute(TABLE_SQL)
        targets: dict[str, tuple[loadgen.Target, Child]] = {}
        for label in labels:
            port = free_port()
            server_env = {**env, "BENCH_DATABASE_URL": database_url} if label == "bare" else env
            child = children.start(label, gunicorn_argv(SERVERS[label][1], port, args.workers), server_env)
            targets[label] = (loadgen.Target("127.0.0.1", port, WEBHOOK_PATH), child)
        for label, (target, child) in targets.items():
            if label == "bare":
                wait_until_serving(child, target.port, WEBHOOK_PATH, method="POST")
            else:
                wait_until_serving(child, target.port, "/healthz")
        load = WebhookLoad(args.users)
        print(
            f"\n  {args.workers} sync workers each, concurrency {args.concurrency}, {args.users} users, "
            f"one text event per request; set up in {time.perf_counter() - started:.1f} s"
        )

        acknowledged = 0  # every 2xx answer of an app queued one wake-up (one user per request)

        def measure(label: str, drive) -> Measured:
            nonlocal acknowledged
            target, child = targets[label]
            meter = CpuMeter(
                {"gunicorn": lambda: ([child.pgid], []), "postgres": lambda: ([], backend_pids(monitor, name))}
            )
            meter.start()
            run = drive(target)
            cpu = meter.stop()
            if label != "bare":
                acknowledged += len(run.ok)
            return Measured(label, run, cpu)

        def closed(target: loadgen.Target, seconds: float) -> loadgen.Run:
            return loadgen.run_concurrency(
                target, load, concurrency=args.concurrency, duration=seconds, max_requests=args.max_requests
            )

        for label in labels:  # connections, imports, caches; not counted
            measure(label, lambda target: closed(target, plan.warmup_seconds))
        results: dict[str, list[Measured]] = {label: [] for label in labels}
        for round_number in range(plan.rounds):
            # Each round in another order, so that no server always runs first (or last).
            order = labels[round_number % len(labels) :] + labels[: round_number % len(labels)]
            if round_number % 2:
                order.reverse()
            for label in order:
                results[label].append(measure(label, lambda target: closed(target, plan.round_seconds)))
        rate_results = {}
        for label in labels:
            rate_results[label] = measure(
                label,
                lambda target: loadgen.run_rate(
                    target, load, rate=args.rate, duration=plan.rate_seconds, threads=args.concurrency
                ),
            )

        queued = redis.llen(QUEUE_KEY)
        clusters = running_clusters(redis)
        stored = monitor.execute("SELECT count(*) FROM messaging_inboxevent").fetchone()[0]
        report(args, plan, results, rate_results, acknowledged=acknowledged, queued=queued, stored=stored,
               clusters=clusters)
        problems = [f"{child.name}: {line}" for child in children.items for line in child.error_lines()]
        if problems:
            print("\n  errors in the servers' output (last ones):")
            for line in problems:
                print(f"    {line[:300]}")
    finally:
        monitor.close()
        children.stop_all()
        redis.flushdb()
        if not args.keep_database:
            drop_database(database_url)
        print(f"\n  Redis db flushed{'' if args.keep_database else ', database dropped'}; "
              f"total {time.perf_counter() - started:.1f} s, load average at the end {load_average()}")
    return 0


def report(args, plan, results, rate_results, *, acknowledged: int, queued: int, stored: int, clusters: int) -> None:
    labels = list(results)
    header = ["server", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    combined = {label: _merge([m.run for m in results[label]]) for label in labels}
    figures = {label: loadgen.summary(run) for label, run in combined.items()}

    def row(label: str, figure: dict, run: loadgen.Run) -> list[str]:
        errors = f"{figure['errors']}" + (f" ({loadgen.error_kinds(run)})" if figure["errors"] else "")
        return [
            SERVERS[label][0],
            f"{figure['requests']:,}",
            errors,
            f"{figure['rps']:,.0f}",
            f"{figure['p50']:.1f}",
            f"{figure['p90']:.1f}",
            f"{figure['p99']:.1f}",
            f"{figure['max']:.1f}",
        ]

    print(f"\n== Fixed concurrency {args.concurrency}: {plan.rounds} rounds of {plan.round_seconds:g} s per server, "
          "in rotating order ==")
    print_table(header, [row(label, figures[label], combined[label]) for label in labels])
    bare_rps = max(figures["bare"]["rps"], 1e-9)
    ratio = figures["app"]["rps"] / bare_rps
    for label in labels:
        if label == "bare":
            continue
        per_round = [
            f"{loadgen.summary(m.run)['rps'] / max(loadgen.summary(b.run)['rps'], 1e-9):.2f}"
            for m, b in zip(results[label], results["bare"], strict=True)
        ]
        print(f"  ratio {label}/bare (req/s): {figures[label]['rps'] / bare_rps:.2f}x (per round: {', '.join(per_round)}); "
              f"p99 {figures[label]['p99'] / max(figures['bare']['p99'], 1e-9):.1f}x")
    print("  at a fixed concurrency, mean latency ≈ concurrency ÷ throughput (Little's law): the p99 follows the req/s")

    print("\n  CPU per request (ms of CPU, all cores; from /proc, during the rounds):")
    cpu_rows = []
    for label in labels:
        measured = results[label]
        busy = sum(m.cpu["machine busy %"] * m.cpu["wall"] for m in measured) / sum(m.cpu["wall"] for m in measured)
        cpu_rows.append(
            [
                SERVERS[label][0],
                f"{_cpu_per_request_ms(measured, 'gunicorn'):.2f}",
                f"{_cpu_per_request_ms(measured, 'postgres'):.2f}",
                f"{_cpu_per_request_ms(measured, 'bench process'):.2f}",
                f"{busy:.0f} %",
            ]
        )
    print_table(["server", "gunicorn (master+workers)", "postgres backends", "load generator", "machine busy"], cpu_rows)
    print("  (machine busy: all cores, including other people's work on the machine)")

    print(f"\n== Fixed rate {args.rate:g} requests/s for {plan.rate_seconds:g} s each (latency without a queue) ==")
    rate_rows = []
    for label in labels:
        run = rate_results[label].run
        rate_rows.append(
            row(label, loadgen.summary(run), run)
            + [f"{run.late}", f"{_cpu_per_request_ms([rate_results[label]], 'gunicorn'):.2f}"]
        )
    print_table([*header, "sent late", "gunicorn CPU ms/req"], rate_rows)
    rate_figures = {label: loadgen.summary(rate_results[label].run) for label in labels}
    rate_app, rate_bare = rate_figures["app"], rate_figures["bare"]
    print(f"  ratio app/bare: p50 {rate_app['p50'] / max(rate_bare['p50'], 1e-9):.1f}x, "
          f"p99 {rate_app['p99'] / max(rate_bare['p99'], 1e-9):.1f}x")
    if "what-if" in labels:
        print(f"  what-if patch 1: {WHAT_IF[0]} (the only one the webhook touches)")

    print("\n== Checks ==")
    print(
        f"  the apps answered 200 to {acknowledged:,} requests (warm-up included): {stored:,} InboxEvent rows stored, "
        f"{queued:,} wake-ups waiting in Redis ({QUEUE_KEY}), {clusters} qcluster reporting"
    )
    consistent = stored == acknowledged and queued == acknowledged and clusters == 0
    print("  " + ("consistent: every acknowledged event was stored and queued once, nothing consumed the queue"
                  if consistent else "NOT consistent: see the counts above"))

    print("\n== Targets (app as is) ==")
    app_p99 = figures["app"]["p99"]
    verdict = "met" if ratio >= TARGET_ACK_RATIO else "NOT met"
    print(f"  throughput ≥ {TARGET_ACK_RATIO}x the bare baseline: {ratio:.2f}x → {verdict}")
    verdict = "met" if app_p99 < TARGET_ACK_P99_MS else "NOT met"
    print(f"  p99 < {TARGET_ACK_P99_MS:g} ms at concurrency {args.concurrency}: {app_p99:.1f} ms → {verdict}")
    verdict = "met" if rate_app["p99"] < TARGET_ACK_P99_MS else "NOT met"
    print(f"  (p99 < {TARGET_ACK_P99_MS:g} ms at {args.rate:g} req/s: {rate_app['p99']:.1f} ms → {verdict})")
    if "what-if" in labels:
        what_if = figures["what-if"]
        print(f"  (what-if patch 1: {what_if['rps'] / bare_rps:.2f}x the baseline, p99 {what_if['p99']:.1f} ms "
              f"at concurrency {args.concurrency})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, to check that it works")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--users", type=int, default=200, help="distinct LINE users (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s of the fixed-rate run (default 100)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap per round (default 100000)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and re-created: name must start with 'bench'")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed before and after (default db 3)")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--no-what-if", action="store_true", help="skip the what-if server")
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 256 or args.rate <= 0 or args.users < 1:
        parser.error("concurrency must be 1..256, rate and users positive")
    raise_on_sigterm()
    sys.dont_write_bytecode = True  # nothing written outside bench/ (children: PYTHONDONTWRITEBYTECODE)
    try:
        return run_webhook_benchmark(args, QUICK if args.quick else FULL)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
