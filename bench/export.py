"""Benchmark of the auditors' CSV export (procedures/exports.py) on PostgreSQL.

Run from the project root (see bench/README.md, "Export benchmark"):

    .venv/bin/python -m bench.export              # 100k applications x 20 answers
    .venv/bin/python -m bench.export --quick      # 10k applications, to check that it works
    .venv/bin/python -m bench.export --rows 50000 --database-url postgres://user@host:5432/other_db

It loads (once, kept for the next run) a procedure with 20 input steps and N applications,
then streams the real export (`procedures.exports.application_export`, UTF-8 with BOM) to
nowhere, measuring the wall time (best of --repeat, 3 by default, with the others shown), this
process's CPU time and the peak Python memory (tracemalloc) at N/10 and at N rows: flat memory
means the two peaks are about the same. The baseline is PostgreSQL's own
`COPY (SELECT …) TO STDOUT WITH CSV` of the same rows and columns, timed after each export; the
answers columns are encrypted (govtech/crypto.py), so COPY moves the tokens while the export
decrypts them. Rows stored in an older token format stop the run: --recreate-database loads
them again.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bench.engine import drop_postgres, prepare_postgres, redact, setup_django

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_export"
PREFIX = "BENCHEXP"
STEPS = 20
BATCH = 5000
CHOICES = (("a", "燃えるごみ"), ("b", "資源ごみ"), ("c", "粗大ごみ"), ("d", "その他"))
START = datetime(2026, 4, 1, tzinfo=UTC)
JST = ZoneInfo("Asia/Tokyo")


def bench_procedure():
    """The benchmark's procedure (created and published on first use): 20 input steps, a fee."""
    from procedures import models
    from procedures.services import draft_get_or_create, version_publish

    procedure = models.Procedure.objects.filter(receipt_prefix=PREFIX).first()
    if procedure is not None and procedure.current_version_id:
        return procedure
    procedure = procedure or models.Procedure.objects.create(name="書き出しベンチマーク", receipt_prefix=PREFIX)
    draft = draft_get_or_create(procedure=procedure)
    for index in range(STEPS):
        fields = {"version": draft, "position": index + 1, "key": f"q{index:02d}", "label": f"質問{index + 1}"}
        kind = index % 4
        if kind == 0:
            step = models.SingleChoiceStep.objects.create(**fields)
            for position, (value, label) in enumerate(CHOICES):
                models.StepChoice.objects.create(step=step, position=position, value=value, label=label, amount=100)
        elif kind == 1:
            step = models.MultipleChoiceStep.objects.create(**fields)
            for position, (value, label) in enumerate(CHOICES):
                models.StepChoice.objects.create(step=step, position=position, value=value, label=label)
        elif kind == 2:
            models.NumberStep.objects.create(**fields, unit="点")
        else:
            models.ShortTextStep.objects.create(**fields, sensitive=index == 3)
    models.ConfirmationStep.objects.create(version=draft, position=STEPS + 1, key="confirm", label="確認")
    models.CompletionStep.objects.create(version=draft, position=STEPS + 2, key="done", label="受け付けました。")
    models.ComputedValue.objects.create(
        version=draft, key="fee", label="手数料", unit="円", terms=[{"step": "q00", "factor": 1}]
    )
    version_publish(version=draft)
    procedure.refresh_from_db()
    return procedure


def _answers(n: int) -> dict:
    answers = {}
    for index in range(STEPS):
        kind = index % 4
        if kind == 0:
            answers[f"q{index:02d}"] = CHOICES[(n + index) % 4][0]
        elif kind == 1:
            answers[f"q{index:02d}"] = [CHOICES[(n + index) % 4][0], CHOICES[(n + index + 1) % 4][0]]
        elif kind == 2:
            answers[f"q{index:02d}"] = (n + index) % 10 + 1
        else:
            answers[f"q{index:02d}"] = f"回答{n}-{index} 東京都千代田区"
    return answers


def load_applications(procedure, rows: int) -> int:
    """Top the procedure up to `rows` applications (bulk inserts); returns how many were added."""
    from procedures.models import Application, ApplicationStatus

    have = Application.objects.filter(procedure=procedure).count()
    status = ApplicationStatus.objects.get(procedure=procedure, is_initial=True)
    added = 0
    while have + added < rows:
        batch = []
        for n in range(have + added, min(rows, have + added + BATCH)):
            batch.append(
                Application(
                    procedure=procedure,
                    version_id=procedure.current_version_id,
                    receipt_number=f"{PREFIX}-2026-{n:07d}",
                    line_user_id=f"Ubench{n:026d}",
                    submission_key=f"bench-{n}",
                    answers=_answers(n),
                    computed={"fee": 100},
                    submitted_at=START + timedelta(minutes=n),
                    status=status,
                )
            )
        Application.objects.bulk_create(batch)
        added += len(batch)
    return added


def tokens_open(procedure) -> bool:
    """Whether the stored answers open with the current token format and keys (one row is enough)."""
    from govtech.crypto import UndecryptableValue
    from procedures.models import Application

    try:
        Application.objects.filter(procedure=procedure).only("answers", "computed").first()
    except UndecryptableValue:
        return False
    return True


def bench_user():
    from django.contrib.auth import get_user_model

    user, _created = get_user_model().objects.get_or_create(
        username="bench-export", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


@dataclass
class ExportRun:
    seconds: float  # wall time
    cpu_seconds: float  # this process only: PostgreSQL's share and other people's work are left out
    size: int  # bytes of CSV
    peak: int  # tracemalloc peak, 0 when not traced


def run_export(user, procedure, date_to=None, *, trace: bool) -> ExportRun:
    """One full export, streamed into nothing."""
    from procedures.exports import ExportFilters, application_export

    gc.collect()
    if trace:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    size = 0
    for chunk in application_export(user=user, filters=ExportFilters(procedure=procedure, date_to=date_to)):
        size += len(chunk)
    run = ExportRun(time.perf_counter() - started, time.process_time() - cpu_started, size, 0)
    if trace:
        run.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return run


COPY_SQL = """
COPY (
    SELECT a.receipt_number, a.submitted_at, s.label, v.number, a.line_user_id, a.answers, a.computed
    FROM procedures_application a
    JOIN procedures_applicationstatus s ON s.id = a.status_id
    JOIN procedures_procedureversion v ON v.id = a.version_id
    WHERE a.procedure_id = {procedure_id} AND NOT a.is_test
    ORDER BY a.submitted_at, a.id
) TO STDOUT WITH CSV HEADER
"""


def run_copy(procedure) -> tuple[float, int]:
    from django.db import connection

    started = time.perf_counter()
    size = 0
    with connection.cursor() as cursor, cursor.copy(COPY_SQL.format(procedure_id=int(procedure.pk))) as copy:
        for block in copy:
            size += len(block)
    return time.perf_counter() - started, size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10k rows")
    parser.add_argument(
        "--repeat", type=int, default=3, help="time the full export (and COPY) this many times; the best is shown"
    )
    parser.add_argument(
        "--drop-database", action="store_true", help="drop the database at the end if this run created it"
    )
    parser.add_argument(
        "--recreate-database",
        action="store_true",
        help="drop the database first and load it again (its name must start with 'bench'); needed when its "
        "answers were encrypted in an older token format or with another key",
    )
    args = parser.parse_args(argv)
    rows = 10_000 if args.quick else max(10, args.rows)
    if not args.database_url.startswith("postgres"):
        raise SystemExit("the export benchmark compares with COPY: it needs PostgreSQL")

    server, created = prepare_postgres(args.database_url)
    if args.recreate_database and not created:
        if not urlsplit(args.database_url).path.lstrip("/").startswith("bench"):
            raise SystemExit("--recreate-database drops only databases whose name starts with 'bench'")
        drop_postgres(args.database_url)
        server, created = prepare_postgres(args.database_url)
    setup_django(args.database_url)
    print(f"database: {redact(args.database_url)} (PostgreSQL {server})")
    procedure = bench_procedure()
    if not tokens_open(procedure):
        raise SystemExit(
            "the benchmark's applications cannot be decrypted with the current token format and keys "
            "(written by an older version): run again with --recreate-database"
        )
    started = time.perf_counter()
    added = load_applications(procedure, rows)
    print(f"applications: {rows:,} x {STEPS} answers ({added:,} loaded in {time.perf_counter() - started:.1f} s)")
    from procedures.models import Application

    total = Application.objects.filter(procedure=procedure).count()
    if total != rows:
        print(f"note: the database holds {total:,} applications of the benchmark procedure; all are exported")
    user = bench_user()

    tenth_day = (START + timedelta(minutes=max(1, total // 10) - 1)).astimezone(JST).date()
    tenth = run_export(user, procedure, date_to=tenth_day, trace=True)
    timed, copies = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same load of a shared machine
        timed.append(run_export(user, procedure, trace=False))
        copies.append(run_copy(procedure))
    traced = run_export(user, procedure, trace=True)

    best = min(timed, key=lambda run: run.seconds)
    copy_seconds, copy_size = min(copies)
    spread = ", ".join(f"{run.seconds:.2f}" for run in timed)
    print(
        f"export:  {best.seconds:6.2f} s  {best.size / 1e6:8.1f} MB  {total / best.seconds:10,.0f} rows/s  "
        f"(target < 10 s; best of {len(timed)}: {spread} s)"
    )
    print(f"         {min(run.cpu_seconds for run in timed):6.2f} s of this process's CPU (best of {len(timed)})")
    print(
        f"COPY:    {copy_seconds:6.2f} s  {copy_size / 1e6:8.1f} MB  {total / copy_seconds:10,.0f} rows/s  (best of {len(copies)})"
    )
    print(f"ratio export / COPY: {best.seconds / copy_seconds:.1f}x")
    print(
        f"peak Python memory: {traced.peak / 1e6:.1f} MB for all rows, {tenth.peak / 1e6:.1f} MB for about a tenth "
        f"({tenth.size / 1e6:.1f} MB of CSV) – flat when these are close"
    )
    if args.drop_database and created:
        from django.db import connections

        connections.close_all()
        drop_postgres(args.database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
