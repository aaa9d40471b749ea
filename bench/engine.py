"""Benchmark of the conversation engine, pure and with its database writes.

Run from the project root (see bench/README.md for what the figures mean):

    .venv/bin/python -m bench.engine            # full run, under a minute
    .venv/bin/python -m bench.engine --quick    # a few seconds
    .venv/bin/python -m bench.engine --no-db    # the pure engine only

Part 1 replays complete conversations (the two demo procedures and generated
50-step procedures, answered by bench.autopilot) through `engine.step` and
compares the cost per step with the unavoidable JSON round trip of the state.

Part 2 drives residents through the bulky-garbage demo with
`services.conversation_handle` on PostgreSQL (or the --database-url given) and
compares each step with the bare minimum a stateful conversation needs: lock
the resident's session row, save the new state, in one transaction.

Django is only set up for part 2, so part 1 also shows the engine needs none.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from bench.autopilot import Autopilot, AutopilotStuck, Turn, drive_engine, generate_procedure, submits_of
from procedures.engine import Catalog, Event, Result
from procedures.engine import step as engine_step
from procedures.spec import ProcedureSpec, parse_spec, validate_spec

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_engine"
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "procedures" / "templates_library"
# The demo templates, named here because procedures.demo needs Django and part 1 must not.
DEMO_FILES = (("bulky_garbage.json", "bulky garbage"), ("residence_certificate_mail.json", "residence certificate"))
# A Tuesday, 10:00 in Tokyo: a fixed clock keeps the dates, and so the conversations, identical run to run.
CLOCK = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
SAVEPOINT_PREFIXES = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
TRANSACTION_STATEMENTS = ("BEGIN", "COMMIT", "ROLLBACK")


@dataclass(frozen=True)
class Plan:
    """How much work one run does; --quick trades precision for time."""

    demo_conversations: int  # per demo procedure; the first one takes the first choices, the rest random ones
    generated: int  # generated 50-step procedures, one conversation each
    repeats: int  # timed repeats of each replay; the best is the headline, the median is shown next to it
    min_repeat_seconds: float  # a repeat loops over the replay until it lasts at least this long
    residents: int  # measured database conversations
    warmup_residents: int  # run first and not measured (connection, caches, spec parsing)


FULL = Plan(demo_conversations=5, generated=20, repeats=7, min_repeat_seconds=0.4, residents=50, warmup_residents=3)
QUICK = Plan(demo_conversations=2, generated=4, repeats=3, min_repeat_seconds=0.05, residents=8, warmup_residents=1)


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: an observed value, good enough for p50/p95 of a few hundred samples."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


# Part 1 is pure computation, so it is timed in CPU seconds of this process: on a shared
# machine (2 cores, other people's test runs) wall-clock time would also count the
# time slices given to other processes. Part 2 waits for PostgreSQL and uses wall time.
cpu_clock = time.process_time


def timed_loops(work: Callable[[], None], loops: int) -> float:
    """CPU seconds for `loops` calls of work, with the garbage collector off as timeit does."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = cpu_clock()
        for _ in range(loops):
            work()
        return cpu_clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def seconds_per_item(work: Callable[[], None], items: int, plan: Plan) -> tuple[float, float]:
    """(best, median) over plan.repeats of the time per item, each repeat long enough for a stable clock.

    The best repeat is the headline figure, as timeit recommends: on a shared
    machine the slower repeats measure the neighbours, not the code.
    """
    once = max(timed_loops(work, 1), 1e-6)  # also warms up caches
    loops = min(10_000, max(1, math.ceil(plan.min_repeat_seconds / once)))
    results = [timed_loops(work, loops) / (loops * items) for _ in range(plan.repeats)]
    return min(results), statistics.median(results)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, ["-" * width for width in widths], *rows):
        print("  " + "  ".join(str(cell).rjust(width) if i else str(cell).ljust(width) for i, (cell, width) in enumerate(zip(line, widths, strict=True))))


# --------------------------------------------------------------------------
# Part 1: the pure engine
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """One recorded engine call, ready to be replayed: step(catalog, state, event, now)."""

    catalog: Catalog
    state: dict | None
    event: Event
    now: datetime
    kind: str  # what the event answered: "start", a step kind, or "confirmation"
    result: Result  # what the engine returned when recorded


@dataclass
class Dataset:
    name: str
    inputs: list[Replay] = field(default_factory=list)
    conversations: int = 0

    def add(self, catalog: Catalog, turns: list[Turn]) -> None:
        submits = submits_of(turns)
        if len(submits) != 1:
            raise AutopilotStuck(f"{self.name}: expected exactly one Submit, got {len(submits)}")
        for turn in turns:
            session = (turn.state or {}).get("session")
            kind = "start"
            if session is not None:
                kind = catalog.versions[session["version_id"]].get_step(session["current"]).kind
            self.inputs.append(Replay(catalog, turn.state, turn.event, turn.now, kind, turn.result))
        self.conversations += 1


def demo_specs() -> list[tuple[ProcedureSpec, str]]:
    """The demo templates parsed the way a published version is (ids made up: no database here)."""
    return [
        (parse_spec({**data_of(file_name), "procedure_id": index, "version_id": 100 + index}), label)
        for index, (file_name, label) in enumerate(DEMO_FILES, start=1)
    ]


def data_of(file_name: str) -> dict:
    return json.loads((TEMPLATES_DIR / file_name).read_text(encoding="utf-8"))["procedure"]


def catalog_of(*specs: ProcedureSpec) -> Catalog:
    return Catalog(versions={s.version_id: s for s in specs}, current={s.procedure_id: s.version_id for s in specs})


def record_conversations(plan: Plan) -> list[Dataset]:
    """Complete conversations with the autopilot and keep every (state, event, now) the engine saw."""
    demos = [spec for spec, _label in demo_specs()]
    demo_catalog = catalog_of(*demos)
    datasets = []
    for spec, label in demo_specs():
        dataset = Dataset(f"{label} (demo, {len(spec.steps)} steps)")
        for run in range(plan.demo_conversations):
            rng = None if run == 0 else random.Random(run)  # first choices first, then seeded variety
            dataset.add(demo_catalog, drive_engine(demo_catalog, spec.procedure_id, now=CLOCK, rng=rng))
        datasets.append(dataset)
    generated = Dataset("generated 50-step (seeded)")
    for seed in range(plan.generated):
        spec = parse_spec(generate_procedure(seed, n_steps=50, procedure_id=1000 + seed, version_id=2000 + seed))
        assert not validate_spec(spec), f"generated procedure {seed} would not publish"
        catalog = catalog_of(*demos, spec)  # next to the demos, as in a city's catalog
        generated.add(catalog, drive_engine(catalog, spec.procedure_id, now=CLOCK, rng=random.Random(seed)))
    datasets.append(generated)
    return datasets


def run_engine_part(plan: Plan) -> dict:
    print("\n== Part 1: pure engine (no database), complete conversations replayed ==")
    started = time.perf_counter()
    datasets = record_conversations(plan)
    rows, summary, by_kind = [], {}, defaultdict(list)
    for dataset in datasets:
        inputs = dataset.inputs
        states = [item.state for item in inputs]
        # The replay must reproduce the recorded conversation, or we would time something else.
        for item in inputs:
            again = engine_step(item.catalog, item.state, item.event, item.now)
            assert again.state == item.result.state and again.messages == item.result.messages

        def engine_work(inputs=inputs):
            for item in inputs:
                engine_step(item.catalog, item.state, item.event, item.now)

        def baseline_work(states=states):
            for state in states:
                json.loads(json.dumps(state))

        engine_s, engine_median = seconds_per_item(engine_work, len(inputs), plan)
        baseline_s, _baseline_median = seconds_per_item(baseline_work, len(states), plan)
        single = single_step_times(inputs)
        for item, seconds in zip(inputs, single, strict=True):
            by_kind[item.kind].append(seconds)
        state_bytes = statistics.mean(len(json.dumps(state)) for state in states if state)
        rows.append(
            [
                dataset.name,
                f"{dataset.conversations}",
                f"{len(inputs)}",
                f"{1 / engine_s:,.0f}",
                f"{engine_s * 1e6:.1f}",
                f"{engine_median * 1e6:.1f}",
                f"{percentile(single, 0.5) * 1e6:.0f} / {percentile(single, 0.95) * 1e6:.0f}",
                f"{baseline_s * 1e6:.1f}",
                f"{engine_s / baseline_s:.1f}x",
                f"{state_bytes:,.0f}",
            ]
        )
        summary[dataset.name] = {"engine_us": engine_s * 1e6, "baseline_us": baseline_s * 1e6}
    print_table(
        ["procedure", "convs", "steps", "steps/s", "µs/step", "median", "p50/p95 µs", "json µs", "engine/json", "state B"],
        rows,
    )
    print(f"  steps/s, µs/step: CPU time, best of {plan.repeats} replays of all the conversations (median: their median);")
    print("  p50/p95: single steps timed one by one (best of 3 each); state B: JSON size of the state;")
    print("  json µs: json.loads(json.dumps(state)) of the same input states (the baseline), best of the same.")
    kind_rows = [
        [kind, f"{len(times)}", f"{statistics.mean(times) * 1e6:.0f}", f"{percentile(times, 0.95) * 1e6:.0f}"]
        for kind, times in sorted(by_kind.items(), key=lambda item: -statistics.mean(item[1]))
    ]
    print("\n  µs per step by what the step answered (all datasets):")
    print_table(["answered", "steps", "mean µs", "p95 µs"], kind_rows)
    parse_rows = []
    for spec_data, label in [(data_of(file_name), label) for file_name, label in DEMO_FILES] + [
        (generate_procedure(0, n_steps=50), "generated 50-step")
    ]:
        parse_us = seconds_per_item(lambda data=spec_data: parse_spec(data), 1, plan)[0] * 1e6
        parse_rows.append([label, f"{parse_us:.0f}"])
    print("\n  parse_spec per procedure (selectors caches it per published version, so once per process):")
    print_table(["procedure", "µs"], parse_rows)
    print(f"  part 1 took {time.perf_counter() - started:.1f} s")
    return summary


def single_step_times(inputs: list[Replay]) -> list[float]:
    """Each step timed on its own (best of 3), to see the spread that an average hides."""
    times = []
    gc.disable()
    try:
        for item in inputs:
            best = math.inf
            for _ in range(3):
                start = cpu_clock()
                engine_step(item.catalog, item.state, item.event, item.now)
                best = min(best, cpu_clock() - start)
            times.append(best)
    finally:
        gc.enable()
    return times


# --------------------------------------------------------------------------
# Part 2: conversations with their database writes
# --------------------------------------------------------------------------


def prepare_postgres(database_url: str) -> tuple[str, bool]:
    """Create the benchmark database if missing; returns (server version, created by this run)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit("--database-url needs a database name")
    maintenance_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=5) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return version, not exists


def drop_postgres(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(parts.path.lstrip("/"))))


def setup_django(database_url: str) -> None:
    # Settings are read from the environment at import, so this must happen before django.setup().
    # The URL comes from the command line only: a DATABASE_URL already in the environment may be a
    # developer's real database, and the benchmark writes to it.
    os.environ["DATABASE_URL"] = database_url
    os.environ["GOVTECH_TESTING"] = "1"
    os.environ["DJANGO_SETTINGS_MODULE"] = "govtech.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def statements_of(captured) -> list[str]:
    """The real statements sent: savepoints are bookkeeping of nested atomic blocks, left out.

    Django (4.2+) also logs BEGIN and COMMIT; they are real round trips and are counted.
    """
    return [q["sql"] for q in captured.captured_queries if not q["sql"].lstrip().upper().startswith(SAVEPOINT_PREFIXES)]


def data_count(statements: list[str]) -> int:
    """Statements other than BEGIN/COMMIT/ROLLBACK."""
    return sum(1 for sql in statements if sql.strip().upper() not in TRANSACTION_STATEMENTS)


@dataclass
class StepSample:
    phase: str  # "start", "answer" or "submit"
    ms: float
    statements: list[str]
    baseline_ms: float
    baseline_statements: list[str]
    catalog_ms: float  # catalog_build() alone, run after the step (part of the step's cost)
    catalog_queries: int


def run_database_part(plan: Plan, database_url: str, engine_us: float | None) -> None:
    print(f"\n== Part 2: conversation_handle on {redact(database_url)} (bulky garbage) ==")
    started = time.perf_counter()
    setup_django(database_url)
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from procedures.demo import load_demo
    from procedures.models import Application, ConversationSession
    from procedures.selectors import catalog_build
    from procedures.services import conversation_handle

    demo = {result.receipt_prefix: result.procedure for result in load_demo()}
    procedure = demo["SODAI"]
    spec = catalog_build().current_spec(procedure.pk)
    if spec is None:
        raise SystemExit("the bulky-garbage demo procedure is not open in the benchmark database")
    # Unique per run, so runs never meet each other's rows; this run's rows are removed at the end.
    tag = f"bench-{os.getpid()}-{int(time.time())}"

    def save_state_only(line_user_id: str, state: dict) -> None:
        """The baseline: what any stateful conversation must do, lock the row and write the state."""
        with transaction.atomic():
            row = ConversationSession.objects.select_for_update().get(line_user_id=line_user_id)
            row.state = state
            row.save(update_fields=["state", "updated_at"])

    samples: list[StepSample] = []
    try:
        for resident in range(plan.warmup_residents + plan.residents):
            measured = resident >= plan.warmup_residents
            user_id, baseline_id = f"{tag}-r{resident}", f"{tag}-b{resident}"
            ConversationSession.objects.create(line_user_id=baseline_id, state={})
            # Random but seeded choices: some residents get the follow-up questions on numbers of items.
            pilot = Autopilot(spec, procedure.pk, rng=random.Random(resident))
            event, clock = pilot.start_event(), CLOCK
            for _turn in range(200):  # bounded: a bulky-garbage conversation takes about 15 events
                with CaptureQueriesContext(connection) as captured:
                    start = time.perf_counter()
                    reply = conversation_handle(line_user_id=user_id, event=event, now=clock, is_test=True)
                    elapsed = time.perf_counter() - start
                statements = statements_of(captured)
                # Untimed: the saved state, for the baseline and for the autopilot's cross-check.
                state = ConversationSession.objects.values_list("state", flat=True).get(line_user_id=user_id)
                with CaptureQueriesContext(connection) as base_captured:
                    base_start = time.perf_counter()
                    save_state_only(baseline_id, state)
                    base_elapsed = time.perf_counter() - base_start
                if measured:
                    # What conversation_handle spends on the catalog (one query plus model loading) each step.
                    with CaptureQueriesContext(connection) as catalog_captured:
                        catalog_start = time.perf_counter()
                        catalog_build(pinned_version_ids=[spec.version_id])
                        catalog_elapsed = time.perf_counter() - catalog_start
                    phase = "start" if event.type == "start" else "submit" if reply.applications else "answer"
                    samples.append(
                        StepSample(
                            phase=phase,
                            ms=elapsed * 1e3,
                            statements=statements,
                            baseline_ms=base_elapsed * 1e3,
                            baseline_statements=statements_of(base_captured),
                            catalog_ms=catalog_elapsed * 1e3,
                            catalog_queries=len(statements_of(catalog_captured)),
                        )
                    )
                event, clock = pilot.next_event(reply.messages, state), clock + timedelta(seconds=20)
                if event is None:
                    break
            else:
                raise AutopilotStuck(f"resident {resident} did not complete the procedure")
            count = Application.objects.filter(line_user_id=user_id).count()
            if count != 1:
                raise AutopilotStuck(f"resident {resident} has {count} applications, expected exactly 1")
    finally:
        Application.objects.filter(line_user_id__startswith=tag).delete()
        ConversationSession.objects.filter(line_user_id__startswith=tag).delete()

    report_database(samples, plan, engine_us, connection.vendor)
    print(f"  part 2 took {time.perf_counter() - started:.1f} s")


def report_database(samples: list[StepSample], plan: Plan, engine_us: float | None, vendor: str) -> None:
    def row(label: str, ms: list[float], statements: list[list[str]]) -> list[str]:
        return [
            label,
            f"{len(ms)}",
            f"{percentile(ms, 0.5):.2f}",
            f"{percentile(ms, 0.95):.2f}",
            f"{statistics.mean(ms):.2f}",
            f"{statistics.mean(len(items) for items in statements):.2f}",
            f"{statistics.mean(data_count(items) for items in statements):.2f}",
        ]

    header = ["per step", "steps", "p50 ms", "p95 ms", "mean ms", "queries", "w/o BEGIN/COMMIT"]
    ms = [s.ms for s in samples]
    base_ms = [s.baseline_ms for s in samples]
    queries = statistics.mean(len(s.statements) for s in samples)
    base_queries = statistics.mean(len(s.baseline_statements) for s in samples)
    print(f"  {plan.residents} residents measured after {plan.warmup_residents} warm-up, {len(samples)} steps ({vendor})")
    rows = [
        row("conversation_handle", ms, [s.statements for s in samples]),
        row("baseline: lock row + save state", base_ms, [s.baseline_statements for s in samples]),
    ]
    print_table(header, rows)
    print(
        f"  ratio to baseline: p50 {percentile(ms, 0.5) / percentile(base_ms, 0.5):.1f}x, "
        f"mean {statistics.mean(ms) / statistics.mean(base_ms):.1f}x, queries {queries / base_queries:.1f}x"
    )
    catalog_ms = [s.catalog_ms for s in samples]
    print(
        f"  of which catalog_build(): p50 {percentile(catalog_ms, 0.5):.2f} ms, mean {statistics.mean(catalog_ms):.2f} ms, "
        f"{statistics.mean(s.catalog_queries for s in samples):.0f} query (timed separately, same arguments)"
    )
    if engine_us is not None:
        print(f"  of which the pure engine: {engine_us / 1e3:.3f} ms (part 1, bulky garbage)")
    print("\n  by phase:")
    phase_rows = []
    for phase in ("start", "answer", "submit"):
        chosen = [s for s in samples if s.phase == phase]
        if chosen:
            phase_rows.append(row(phase, [s.ms for s in chosen], [s.statements for s in chosen]))
    print_table(["phase", *header[1:]], phase_rows)
    for phase in ("answer", "submit"):
        example = next((s for s in samples if s.phase == phase), None)
        if example:
            print(f"\n  statements of one {phase} step:")
            for statement in example.statements:
                print("    " + describe(statement))


def describe(statement: str) -> str:
    """A one-line summary of a statement: verb, tables, row locks; the full SQL is too long to read."""
    sql = " ".join(statement.split())
    verb = sql.split(" ", 1)[0].upper()
    if verb in TRANSACTION_STATEMENTS:
        return verb
    main = re.search(r'(?:FROM|INTO|UPDATE) "(\w+)"', sql)
    joins = re.findall(r'JOIN "(\w+)"', sql)
    text = f"{verb} {main.group(1) if main else '?'}"
    if joins:
        text += " JOIN " + ", ".join(joins)
    where = re.search(r" WHERE (.*?)(?: ORDER BY| LIMIT| FOR UPDATE|$)", sql)
    if where and verb == "SELECT":
        columns = sorted(set(re.findall(r'"\w+"\."(\w+)"', where.group(1))))
        text += f" WHERE {', '.join(columns)}" if columns else ""
    if "FOR UPDATE" in sql:
        text += " FOR UPDATE"
    return f"{text}  [{len(sql):,} chars]"


def redact(database_url: str) -> str:
    parts = urlsplit(database_url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return database_url


# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few seconds), for checking it works")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"database for part 2 (default {DEFAULT_DATABASE_URL}); a PostgreSQL database is created if missing",
    )
    parser.add_argument("--no-db", action="store_true", help="run part 1 only")
    parser.add_argument(
        "--drop-database",
        action="store_true",
        help="drop the PostgreSQL database at the end, only if this run created it",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()

    postgres = urlsplit(args.database_url).scheme in ("postgres", "postgresql")
    server, created = "not used", False
    if not args.no_db:
        if postgres:
            try:
                version, created = prepare_postgres(args.database_url)
            except Exception as error:  # any connection problem: say what to fix
                print(f"cannot reach PostgreSQL at {redact(args.database_url)}: {error}", file=sys.stderr)
                print("start it, pass --database-url, or run with --no-db", file=sys.stderr)
                return 2
            server = f"PostgreSQL {version}"
        elif urlsplit(args.database_url).scheme == "sqlite":
            import sqlite3

            server = f"SQLite {sqlite3.sqlite_version}"
        else:
            server = urlsplit(args.database_url).scheme
    print("Engine benchmark" + (" (quick)" if args.quick else ""))
    print(f"  CPU:      {cpu_model()}, {os.cpu_count()} cores")
    print(f"  System:   {platform.system()} {platform.release()}")
    print(f"  Python:   {platform.python_implementation()} {platform.python_version()}")
    print(f"  Database: {server}" + (" (database created by this run)" if created else ""))
    print(f"  Load:     {load_average()} (1/5/15 min; other work on the machine shows up in the timings)")

    summary = run_engine_part(plan)
    if not args.no_db:
        bulky = next((value for name, value in summary.items() if name.startswith("bulky")), None)
        run_database_part(plan, args.database_url, bulky["engine_us"] if bulky else None)
        if args.drop_database:
            from django.db import connections

            connections.close_all()
            if postgres and created:
                drop_postgres(args.database_url)
                print("  dropped the benchmark database (created by this run)")
            else:
                print("  --drop-database: the database existed before this run, so it was left in place")
    print(f"\ntotal {time.perf_counter() - started:.1f} s, load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
