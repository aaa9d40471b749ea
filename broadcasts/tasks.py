"""django-q2 tasks of broadcast sending: thin, take ids, call one service (broadcasts/sending.py).

* broadcast_run_prepare_task(run_id): queued when a run is created (broadcasts/services.py).
* send_broadcast_chunks(): queued once a run's chunks are written; sends what is due.
* sweep_broadcasts(): scheduled every minute (migration 0006_sending_sweep_schedule).
* broadcast_runs_due_task(): scheduled every minute (migration …_runs_due_schedule): creates the
  run of each due occurrence (broadcasts/services.py).
"""

from django.utils import timezone

from broadcasts import sending, services


def broadcast_run_prepare_task(run_id: int) -> str:
    return sending.broadcast_run_prepare(run_id=run_id)


def send_broadcast_chunks() -> int:
    return sending.broadcast_chunks_send().sent


def sweep_broadcasts() -> dict:
    return sending.broadcast_sweep()


def broadcast_runs_due_task() -> int:
    return len(services.broadcast_runs_due(now=timezone.now()))
