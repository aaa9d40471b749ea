"""django-q2 tasks of outgoing webhooks: thin, call one service.

* send_webhooks(): queued after the commit of an event with deliveries, and scheduled every
  minute (migration 0002_send_schedule) for retries after a back-off and senders that died.
"""

from integrations import services


def send_webhooks() -> dict:
    run = services.deliveries_send()
    return {"delivered": run.delivered, "retrying": run.retrying, "failed": run.failed}
