"""Departments, the roles staff hold in them, and the procedures granted to outsourced operators.

Who may do what is decided in one place only: staff/policy.py reads these rows.
Rows are written through staff/services.py, which records every change in the audit log.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


class NotificationMode(models.TextChoices):
    """When a department hears about new applications by e-mail (procedures/notifications.py)."""

    NONE = "none", _("送らない")
    EACH = "each", _("申請ごとに送る")
    DAILY = "daily", _("1日分をまとめて翌朝送る")


class Department(models.Model):
    """A department of the city hall (課). Procedures and staff access hang off it."""

    name = models.CharField(_("名称"), max_length=100, unique=True)
    code = models.SlugField(_("コード"), max_length=40, unique=True)
    notification_email = models.EmailField(
        _("通知先メールアドレス"),
        blank=True,
        help_text=_("新しい申請を知らせるメールの宛先。メールには受付番号と手続き名だけを書き、回答や氏名は書きません。"),
    )
    notification_mode = models.CharField(
        _("メール通知"),
        max_length=20,
        choices=NotificationMode.choices,
        default=NotificationMode.NONE,
    )
    broadcasts_need_approval = models.BooleanField(
        _("一斉配信に承認を必須にする"),
        default=False,
        help_text=_(
            "オンにすると、この部署の一斉配信は、作成者以外の職員が承認するまで配信されません"
            "（緊急配信も含みます。作成者は外せません）。"
        ),
    )
    # The last day whose digest went out: a retried or repeated run never sends a day twice.
    notification_digest_date = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("部署")
        verbose_name_plural = _("部署")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if self.notification_mode != NotificationMode.NONE and not self.notification_email:
            raise ValidationError(
                {"notification_email": _("メール通知を送るには、通知先メールアドレスを入力してください。")}
            )


class Role(models.TextChoices):
    SYSTEM_ADMIN = "system_admin", _("システム管理者")
    DEPARTMENT_STAFF = "department_staff", _("部署職員")
    DEPARTMENT_VIEWER = "department_viewer", _("部署閲覧者")
    OUTSOURCED_OPERATOR = "outsourced_operator", _("委託事業者")
    AUDITOR = "auditor", _("監査担当")


# Which roles take a department: the system administrator and the outsourced operator never
# (city-wide; the operator's reach is its ProcedureGrant rows), department staff and viewers
# always, an auditor optionally (no department = city-wide).
ROLES_WITHOUT_DEPARTMENT = (Role.SYSTEM_ADMIN, Role.OUTSOURCED_OPERATOR)
ROLES_WITH_DEPARTMENT = (Role.DEPARTMENT_STAFF, Role.DEPARTMENT_VIEWER)


class StaffMembership(models.Model):
    """One role a staff user holds, in one department (or city-wide where the role allows it)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_memberships", verbose_name=_("職員")
    )
    department = models.ForeignKey(
        Department,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="memberships",
        verbose_name=_("部署"),
        help_text=_("システム管理者と委託事業者は空欄。監査担当は空欄なら全庁。"),
    )
    role = models.CharField(_("役割"), max_length=32, choices=Role.choices)
    created_at = models.DateTimeField(_("付与日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("職員の役割")
        verbose_name_plural = _("職員の役割")
        ordering = ["user", "role", "department"]
        constraints = [
            models.UniqueConstraint(fields=["user", "role", "department"], name="staff_membership_unique"),
            models.UniqueConstraint(
                fields=["user", "role"],
                condition=models.Q(department__isnull=True),
                name="staff_membership_citywide_unique",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(role__in=[r.value for r in ROLES_WITHOUT_DEPARTMENT], department__isnull=True)
                    | models.Q(role__in=[r.value for r in ROLES_WITH_DEPARTMENT], department__isnull=False)
                    | models.Q(role=Role.AUDITOR.value)
                ),
                name="staff_membership_department_fits_role",
                violation_error_message=_(
                    "システム管理者と委託事業者には部署を指定できません。部署職員と部署閲覧者には部署が必要です。"
                ),
            ),
        ]

    def __str__(self):
        where = self.department.name if self.department_id else _("全庁")
        return f"{self.user} — {self.get_role_display()}（{where}）"


class ProcedureGrant(models.Model):
    """A procedure an outsourced operator (委託事業者) may work on. Only effective while the user holds that role."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="procedure_grants", verbose_name=_("職員")
    )
    procedure = models.ForeignKey(
        "procedures.Procedure", on_delete=models.CASCADE, related_name="grants", verbose_name=_("手続き")
    )
    created_at = models.DateTimeField(_("付与日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("委託事業者の担当手続き")
        verbose_name_plural = _("委託事業者の担当手続き")
        ordering = ["user", "procedure"]
        constraints = [models.UniqueConstraint(fields=["user", "procedure"], name="procedure_grant_unique")]

    def __str__(self):
        return f"{self.user} — {self.procedure}"
