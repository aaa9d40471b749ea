"""A small HTTP load generator for the benchmarks: threads and `http.client`, nothing to install.

Two ways to drive a server, both bounded by a duration and a request count:

* `run_concurrency`: C threads, each sends its next request as soon as its previous answer came
  back (a closed loop: the figure is the throughput; latency is what a client of a busy server sees).
* `run_rate`: requests are scheduled at a fixed rate (request i at start + i / rate) and sent by a
  pool of threads. Latency is measured from the *scheduled* time, so a server (or a load generator)
  that falls behind is charged for the wait, not hidden by it ("coordinated omission").

Each request comes from a callback, `make(index) -> Request | None`, called in the sending thread
just before the request goes out (None: nothing to send in this slot; it is counted as skipped).
`on_done(sample)` is called in the same thread once the answer has been read.

Every request is one `http.client` call with the body as bytes, so headers and body go out in one
`send()` (a separate small body would meet the 40 ms Nagle/delayed-ACK interaction). A server that
answers `Connection: close` (gunicorn's sync workers do) gets a new connection per request, as
real clients of it do.
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the load generator only loads loopback addresses")


@dataclass
class Request:
    body: bytes
    headers: dict[str, str]
    tag: Any = None  # carried to the Sample (e.g. which resident sent it)


@dataclass
class Sample:
    index: int
    tag: Any
    scheduled: float  # perf_counter: when the request should have gone out (= started for run_concurrency)
    started: float  # perf_counter: just before the request was sent
    finished: float  # perf_counter: the answer was read (or the error happened)
    status: int | None  # None: no HTTP answer (connection error, time-out)
    error: str = ""

    @property
    def latency(self) -> float:
        """Seconds from the scheduled time to the answer."""
        return self.finished - self.scheduled

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Run:
    mode: str  # "concurrency 16" or "rate 100/s"
    started: float
    stopped: float  # when the last request finished (or the window closed)
    window: float  # seconds during which requests were started
    samples: list[Sample] = field(default_factory=list)
    skipped: int = 0  # rate mode: slots where make() had nothing to send
    late: int = 0  # rate mode: requests sent more than 10 ms after their slot (the generator could not keep up)

    @property
    def ok(self) -> list[Sample]:
        return [sample for sample in self.samples if sample.ok]

    @property
    def errors(self) -> list[Sample]:
        return [sample for sample in self.samples if not sample.ok]

    def throughput(self) -> float:
        """Successful requests per second of the window they were started in."""
        return len(self.ok) / self.window if self.window > 0 else 0.0

    def latencies_ms(self) -> list[float]:
        return [sample.latency * 1e3 for sample in self.ok]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (an observed value); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class _Client:
    """One keep-alive connection (re-opened when the server closes it)."""

    def __init__(self, target: Target, timeout: float):
        self.target = target
        self.connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

    def send(self, request: Request) -> tuple[int | None, str]:
        headers = {"Content-Type": "application/json", **request.headers}
        try:
            self.connection.request("POST", self.target.path, body=request.body, headers=headers)
            response = self.connection.getresponse()
            response.read()
            if response.will_close:
                self.connection.close()
            return response.status, ""
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()  # a fresh connection for the next request
            return None, f"{type(error).__name__}: {error}"[:200]

    def close(self) -> None:
        self.connection.close()


def run_concurrency(
    target: Target,
    make: Callable[[int], Request | None],
    *,
    concurrency: int,
    duration: float,
    max_requests: int,
    timeout: float = 10.0,
    on_done: Callable[[Sample], None] | None = None,
) -> Run:
    """`concurrency` threads, each sending back to back, until `duration` seconds or `max_requests`."""
    counter = iter(range(max_requests))
    lock = threading.Lock()
    samples: list[Sample] = []
    start = time.perf_counter()
    deadline = start + duration

    def loop() -> None:
        client = _Client(target, timeout)
        mine = []
        try:
            while time.perf_counter() < deadline:
                with lock:
                    index = next(counter, None)
                if index is None:
                    break
                request = make(index)
                if request is None:
                    continue
                sent = time.perf_counter()
                status, error = client.send(request)
                sample = Sample(index, request.tag, sent, sent, time.perf_counter(), status, error)
                mine.append(sample)
                if on_done is not None:
                    on_done(sample)
        finally:
            client.close()
            with lock:
                samples.extend(mine)

    threads = [threading.Thread(target=loop, name=f"loadgen-{n}", daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    stopped = time.perf_counter()
    samples.sort(key=lambda sample: sample.started)
    window = min(stopped, deadline) - start
    return Run(f"concurrency {concurrency}", start, stopped, window, samples)


def run_rate(
    target: Target,
    make: Callable[[int], Request | None],
    *,
    rate: float,
    duration: float,
    max_requests: int | None = None,
    threads: int = 64,
    timeout: float = 10.0,
    on_done: Callable[[Sample], None] | None = None,
) -> Run:
    """Request i is due at start + i / rate, for `duration` seconds (and at most `max_requests`).

    `threads` bounds the requests in flight: when all are busy, the next slots go out late, and
    their latency (from the slot) says so.
    """
    total = math.floor(rate * duration)
    if max_requests is not None:
        total = min(total, max_requests)
    counter = iter(range(total))
    lock = threading.Lock()
    samples: list[Sample] = []
    counts = {"skipped": 0, "late": 0}
    start = time.perf_counter() + 0.05  # every thread is waiting when the first slot comes

    def loop() -> None:
        client = _Client(target, timeout)
        mine, skipped, late = [], 0, 0
        try:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    break
                due = start + index / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                request = make(index)
                if request is None:
                    skipped += 1
                    continue
                sent = time.perf_counter()
                if sent - due > 0.010:
                    late += 1
                status, error = client.send(request)
                sample = Sample(index, request.tag, due, sent, time.perf_counter(), status, error)
                mine.append(sample)
                if on_done is not None:
                    on_done(sample)
        finally:
            client.close()
            with lock:
                samples.extend(mine)
                counts["skipped"] += skipped
                counts["late"] += late

    pool = [threading.Thread(target=loop, name=f"loadgen-{n}", daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(duration + timeout + 5)
    stopped = time.perf_counter()
    samples.sort(key=lambda sample: sample.scheduled)
    window = total / rate if rate > 0 else 0.0
    return Run(f"rate {rate:g}/s", start, stopped, window, samples, counts["skipped"], counts["late"])


def summary(run: Run) -> dict[str, float]:
    """The figures every benchmark prints for one run."""
    latencies = run.latencies_ms()
    return {
        "requests": len(run.samples),
        "ok": len(run.ok),
        "errors": len(run.errors),
        "rps": run.throughput(),
        "p50": percentile(latencies, 0.50),
        "p90": percentile(latencies, 0.90),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies) if latencies else math.nan,
    }


def error_kinds(run: Run, limit: int = 3) -> str:
    """The most common failures, e.g. '503 x12, ConnectionResetError x2'."""
    counts: dict[str, int] = {}
    for sample in run.errors:
        key = str(sample.status) if sample.status is not None else sample.error.split(":", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: -item[1])[:limit]
    return ", ".join(f"{key} x{count}" for key, count in ordered)
