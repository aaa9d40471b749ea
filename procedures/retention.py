"""Retention: applications are deleted once their procedure's retention period (保存期間) has passed.

A daily django-q2 task (procedures.tasks.delete_expired_applications, scheduled by migration
0011_retention_schedule) deletes every application – test applications too – whose submitted_at
lies more than `Procedure.retention_days` days in the past: the row with its answers and computed
values, its status history and every row that references it (on_delete=CASCADE), and, once that
has committed, the image files its answers point to.

Work goes in batches of one procedure's applications, each batch one transaction that claims its
rows with select_for_update(skip_locked=True) (an application a staff member holds right now waits
for the next run) and writes its audit entry ("application.retention_delete": the count, never a
receipt number or an answer). A run that dies mid-way leaves whole applications behind, never
half-deleted ones. Usually that is one audit entry per procedure and run; a procedure with more
than BATCH_SIZE expired applications gets one per batch.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import ProtectedError, RestrictedError
from django.utils import timezone

from audit import actions as audit_actions
from audit.services import audit_record
from procedures.attachments import safe_image_ref
from procedures.models import Application, ApplicationRevision, Procedure

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


class RetentionBlocked(RuntimeError):
    """Some applications could not be deleted; raised after the others were, so the task shows as failed."""


def retention_cutoff(*, retention_days: int, now=None):
    """Applications submitted before this moment are past the retention period."""
    return (now or timezone.now()) - timedelta(days=retention_days)


def retention_due_count(*, procedure: Procedure, retention_days: int, now=None) -> int:
    """How many of the procedure's applications a run now would delete with this retention period."""
    cutoff = retention_cutoff(retention_days=retention_days, now=now)
    return Application.objects.filter(procedure=procedure, submitted_at__lt=cutoff).count()


def applications_expired_delete(*, now=None, batch_size: int = BATCH_SIZE) -> dict:
    """Delete every application past its procedure's retention period; {procedure id: count deleted}."""
    now = now or timezone.now()
    deleted: dict[int, int] = {}
    blocked: list[int] = []
    for procedure in Procedure.objects.order_by("pk").only("pk", "retention_days", "department_id"):
        cutoff = retention_cutoff(retention_days=procedure.retention_days, now=now)
        while True:
            try:
                count = _batch_delete(procedure=procedure, cutoff=cutoff, batch_size=batch_size)
            except (ProtectedError, RestrictedError) as error:
                # A row elsewhere refuses to let its application go: the other procedures still run.
                logger.error("retention: applications of procedure %s cannot be deleted (%s)", procedure.pk,
                             type(error).__name__)
                blocked.append(procedure.pk)
                break
            if count:
                deleted[procedure.pk] = deleted.get(procedure.pk, 0) + count
            if count < batch_size:
                break
    if blocked:
        raise RetentionBlocked(f"retention: procedures {blocked} kept applications past their period")
    return deleted


@transaction.atomic
def _batch_delete(*, procedure: Procedure, cutoff, batch_size: int) -> int:
    rows = list(
        Application.objects.select_for_update(skip_locked=True)
        .filter(procedure_id=procedure.pk, submitted_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", "answers")[:batch_size]
    )
    if not rows:
        return 0
    ids = [pk for pk, _answers in rows]
    # Images replaced by a correction live only in the revisions' old answers.
    earlier_answers = ApplicationRevision.objects.filter(application_id__in=ids).values_list("old_answers", flat=True)
    files = sorted({ref for answers in [*(answers for _pk, answers in rows), *earlier_answers]
                    for ref in _image_refs(answers)})
    Application.objects.filter(pk__in=ids).delete()
    audit_record(
        actor=None,
        action=audit_actions.APPLICATION_RETENTION_DELETE,
        obj=procedure,
        details={
            "count": len(ids),
            "files": len(files),
            "retention_days": procedure.retention_days,
            "submitted_before": cutoff.isoformat(),
        },
    )
    # Only once the rows are gone for good: a rolled-back batch keeps its images.
    transaction.on_commit(lambda: _files_delete(files), robust=True)
    return len(ids)


def _image_refs(answers) -> list[str]:
    values = answers.values() if isinstance(answers, dict) else ()
    refs = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            ref = safe_image_ref(item)
            if ref is not None:
                refs.append(ref)
    return refs


def _files_delete(names: list[str]) -> None:
    failed = 0
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            failed += 1
    if failed:
        # Counts only: a file name is derived from nothing personal, but the log needs no more.
        logger.warning("retention: %s image files could not be deleted", failed)
