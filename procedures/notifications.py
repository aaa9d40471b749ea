"""E-mail to a department about new applications: one per application, or a daily digest.

A department chooses (staff.models.Department.notification_mode). The mails name the procedure,
the receipt number, the time, how it arrived and an admin link – never the answers or the
resident's name: e-mail leaves the city's systems, and whoever reads it logs in to see more.

Sending happens in django-q2 tasks (procedures/tasks.py), enqueued after the submission commits.
A failed send raises, so the task system presents the task again (Q_RETRY, Q_MAX_ATTEMPTS); the
log names ids and the kind of error only.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from procedures.models import Application
from staff.models import Department, NotificationMode

logger = logging.getLogger(__name__)

# A digest lists at most this many receipt numbers; the counts per procedure always cover the whole day.
DIGEST_LIST_LIMIT = 300
MAIL_ERRORS = (OSError, smtplib.SMTPException)


class DigestNotSent(RuntimeError):
    """Some departments' digests failed; raised so the task runs again (the sent ones are skipped)."""


def admin_url(path: str) -> str:
    return settings.GOVTECH_BASE_URL.rstrip("/") + path


def application_mail_enqueue(*, application: Application) -> None:
    """After the caller's commit, queue the mail about a new application if its department wants one."""
    department = application.procedure.department  # loaded with the application's version (no extra query)
    if (
        application.is_test
        or department is None
        or department.notification_mode != NotificationMode.EACH
        or not department.notification_email
    ):
        return
    transaction.on_commit(
        lambda: async_task("procedures.tasks.send_application_mail", application.pk), robust=True
    )


def application_mail_send(*, application_id: int) -> bool:
    """Send the mail about one application; False when there is nothing to send (any more)."""
    application = (
        Application.objects.select_related("procedure__department").filter(pk=application_id, is_test=False).first()
    )
    department = application.procedure.department if application is not None else None
    if department is None or department.notification_mode != NotificationMode.EACH or not department.notification_email:
        return False
    submitted = timezone.localtime(application.submitted_at)
    link = admin_url(reverse("admin:procedures_application_change", args=[application.pk]))
    subject = _("[LINE 市役所] 新しい申請: %(procedure)s（%(receipt)s）") % {
        "procedure": application.procedure.name,
        "receipt": application.receipt_number,
    }
    body = "\n".join(
        [
            _("「%(procedure)s」に新しい申請がありました。") % {"procedure": application.procedure.name},
            "",
            _("受付番号：%(receipt)s") % {"receipt": application.receipt_number},
            _("受付方法：%(channel)s") % {"channel": application.get_channel_display()},
            _("申請日時：%(time)s") % {"time": f"{submitted:%Y-%m-%d %H:%M}"},
            _("管理画面：%(link)s") % {"link": link},
            "",
            _("申請の内容（回答・氏名など）はこのメールには書いていません。管理画面で確認してください。"),
        ]
    )
    _send(subject, body, department, what=f"application {application.pk}")
    return True


def department_digests_send(*, today=None) -> int:
    """Send the previous day's digest to every department that asked for one; returns how many went out.

    A department whose digest for that day went out already is skipped, so a repeated or retried run
    sends nothing twice. Days without applications send nothing.
    """
    today = today or timezone.localdate()
    day = today - timedelta(days=1)
    due = (
        Department.objects.filter(notification_mode=NotificationMode.DAILY)
        .exclude(notification_email="")
        .exclude(notification_digest_date__gte=day)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    sent, failed = 0, []
    for department_id in list(due):
        try:
            sent += _department_digest_send(department_id=department_id, day=day)
        except MAIL_ERRORS:
            failed.append(department_id)  # logged by _send; the others still get theirs
    if failed:
        raise DigestNotSent(f"digest not sent to departments {failed}")
    return sent


@transaction.atomic
def _department_digest_send(*, department_id: int, day) -> int:
    # Locked so that two runs at once never both send; the date is written only after the send.
    department = (
        Department.objects.select_for_update(skip_locked=True)
        .filter(pk=department_id, notification_mode=NotificationMode.DAILY)
        .exclude(notification_digest_date__gte=day)
        .first()
    )
    if department is None:
        return 0
    start = timezone.make_aware(datetime.combine(day, time.min))
    end = start + timedelta(days=1)
    applications = Application.objects.filter(
        is_test=False,
        procedure__department=department,
        procedure__needs_staff_review=True,
        submitted_at__gte=start,
        submitted_at__lt=end,
    ).exclude(channel=Application.Channel.CAMPAIGN)
    counts = list(
        applications.values("procedure__name").annotate(count=Count("pk")).order_by("procedure__name")
    )
    total = sum(row["count"] for row in counts)
    if total:
        rows = list(
            applications.order_by("procedure__name", "submitted_at", "pk").values_list(
                "receipt_number", "procedure__name", "submitted_at", "channel"
            )[:DIGEST_LIST_LIMIT]
        )
        _send(*_digest_text(day, counts, total, rows), department, what=f"digest {day} of department {department.pk}")
    department.notification_digest_date = day
    department.save(update_fields=["notification_digest_date"])
    return 1 if total else 0


def _digest_text(day, counts, total, rows) -> tuple[str, str]:
    date_text = f"{day:%Y-%m-%d}"
    subject = _("[LINE 市役所] %(date)s の新しい申請（%(count)s件）") % {"date": date_text, "count": total}
    channels = dict(Application.Channel.choices)
    lines = [_("%(date)s に受け付けた申請は %(count)s 件です。") % {"date": date_text, "count": total}, ""]
    lines += [_("■ %(procedure)s：%(count)s件") % {"procedure": row["procedure__name"], "count": row["count"]}
              for row in counts]
    lines.append("")
    for receipt, procedure, submitted, channel in rows:
        lines.append(f"{receipt}  {timezone.localtime(submitted):%H:%M}  {channels.get(channel, channel)}  {procedure}")
    if total > len(rows):
        lines.append(_("ほか %(count)s 件は管理画面で確認してください。") % {"count": total - len(rows)})
    query = urlencode({"submitted_at__gte": f"{day:%Y-%m-%d}", "submitted_at__lt": f"{day + timedelta(days=1):%Y-%m-%d}"})
    lines += [
        "",
        _("一覧（管理画面）：%(link)s") % {"link": admin_url(reverse("admin:procedures_application_changelist")) + "?" + query},
        "",
        _("申請の内容（回答・氏名など）はこのメールには書いていません。管理画面で確認してください。"),
    ]
    return subject, "\n".join(lines)


def _send(subject: str, body: str, department: Department, *, what: str) -> None:
    try:
        send_mail(subject, body, None, [department.notification_email])
    except MAIL_ERRORS as error:
        # Ids and the kind of error only: the message of an SMTP error can quote addresses.
        logger.warning("department mail failed (%s): %s", what, type(error).__name__)
        raise
