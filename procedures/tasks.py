"""django-q2 tasks of procedures: thin, take ids, call one service.

* send_application_mail(application_id): queued after a real submission commits, when the
  procedure's department wants a mail per application (procedures/notifications.py).
* send_department_digests(): scheduled daily (migration 0010_department_digest_schedule).
* delete_expired_applications(): scheduled daily (migration 0011_retention_schedule).

A task that raises is presented again by the cluster (Q_RETRY seconds, at most Q_MAX_ATTEMPTS).
"""

from procedures import notifications, retention


def send_application_mail(application_id: int) -> bool:
    return notifications.application_mail_send(application_id=application_id)


def send_department_digests() -> int:
    return notifications.department_digests_send()


def delete_expired_applications() -> dict:
    return retention.applications_expired_delete()
