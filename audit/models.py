"""The audit log: one append-only row per thing that happened (who, what, on which object, from where).

Append-only on every path:
- the model: saving an existing row or deleting one raises AuditLogIsAppendOnly;
- the queryset/manager: update(), delete() and bulk_update() raise;
- the database: triggers refuse UPDATE and DELETE (migration 0002; PostgreSQL and SQLite).

`details` holds ids, counts and filters only – never a resident's answers or any other free text
they typed (audit/services.py checks this before writing).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditLogIsAppendOnly(Exception):
    """Raised on any attempt to change or delete an audit entry."""

    def __init__(self, message: str = "The audit log is append-only: entries cannot be changed or deleted."):
        super().__init__(message)


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditLogIsAppendOnly()

    def delete(self):
        raise AuditLogIsAppendOnly()

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditLogIsAppendOnly()

    def update_or_create(self, defaults=None, create_defaults=None, **kwargs):
        raise AuditLogIsAppendOnly()

    def _raw_delete(self, using):
        raise AuditLogIsAppendOnly()

    _raw_delete.queryset_only = True


class AuditEntryManager(models.Manager.from_queryset(AuditEntryQuerySet)):
    pass


class AuditEntry(models.Model):
    created_at = models.DateTimeField(_("日時"), default=timezone.now, db_index=True, editable=False)
    # PROTECT: a staff account that appears in the log is deactivated, never deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("職員"),
    )
    # The login name as it was at the time (or the name tried in a failed login).
    actor_display = models.CharField(_("職員（記録時）"), max_length=200, blank=True)
    action = models.CharField(_("操作"), max_length=64, db_index=True)
    object_type = models.CharField(_("対象の種類"), max_length=100, blank=True)
    object_id = models.CharField(_("対象ID"), max_length=64, blank=True)
    department = models.ForeignKey(
        "staff.Department",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("部署"),
    )
    details = models.JSONField(_("詳細"), default=dict, blank=True)
    ip = models.GenericIPAddressField(_("IPアドレス"), null=True, blank=True)
    user_agent = models.CharField(_("ブラウザ"), max_length=300, blank=True)

    objects = AuditEntryManager()

    class Meta:
        verbose_name = _("監査ログ")
        verbose_name_plural = _("監査ログ")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_entry_object_idx")]
        # No change or delete permission is ever granted; only viewing.
        default_permissions = ("view",)

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_display} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditLogIsAppendOnly()
        kwargs["force_insert"] = True
        kwargs.pop("force_update", None)
        kwargs.pop("update_fields", None)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogIsAppendOnly()
