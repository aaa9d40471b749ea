"""django-q2 tasks of the LINE channel: thin, take ids, call one service.

* process_user_inbox(line_user_id): queued by the webhook after its commit (one per resident).
* send_outbox(ids=None): queued for rows written outside the inbox worker (notices, staff
  resends), or for an event's rows the worker could not send itself; None sends everything due.
* sweep_inbox(): scheduled every minute (migration 0002_sweep_schedule); wakes what a lost
  wake-up, a retry or a back-off left waiting.
"""

from messaging import services


def process_user_inbox(line_user_id: str) -> int:
    return services.inbox_process_user(line_user_id=line_user_id).processed


def send_outbox(ids: list[int] | None = None) -> int:
    return services.outbox_send(ids=ids).sent


def sweep_inbox() -> dict:
    return services.inbox_sweep()
