"""Outgoing webhooks to a city's back-office system: endpoints per procedure, an outbox, a delivery log.

    WebhookEndpoint   where a procedure's events go (URL, HMAC secret, events, whether sensitive answers go too)
    WebhookDelivery   the outbox: one row per event x endpoint, written in the transaction of the event
    DeliveryAttempt   the log: one row per POST (status code, short error, duration)

The payload holds residents' answers, so it is encrypted at rest like the application's own answers.
"""

import secrets
import uuid

from django.core.validators import URLValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from govtech.crypto import EncryptedJSONField


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


class Event(models.TextChoices):
    SUBMITTED = "application.submitted", _("申請の受付")
    STATUS_CHANGED = "application.status_changed", _("状態の変更")


class WebhookEndpoint(models.Model):
    procedure = models.ForeignKey(
        "procedures.Procedure", on_delete=models.CASCADE, related_name="webhook_endpoints", verbose_name=_("手続き")
    )
    name = models.CharField(_("連携先の名前"), max_length=100, help_text=_("例: 電子申請システム"))
    url = models.URLField(
        _("送信先 URL"),
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text=_("JSON を POST する URL（業務システム側の受け口）。"),
    )
    secret = models.CharField(
        _("署名の秘密鍵"),
        max_length=200,
        default=_new_secret,
        help_text=_("X-Govtech-Signature（本文の HMAC-SHA256）の鍵。業務システム側にも同じ値を設定してください。"),
    )
    is_active = models.BooleanField(_("有効"), default=True)
    on_submitted = models.BooleanField(_("申請の受付を送る"), default=True)
    on_status_changed = models.BooleanField(_("状態の変更を送る"), default=True)
    include_sensitive = models.BooleanField(
        _("機微情報も送る"),
        default=False,
        help_text=_("オンのときだけ、機微情報の回答（氏名・電話番号など）も送ります。"),
    )
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("連携先（Webhook）")
        verbose_name_plural = _("連携先（Webhook）")
        ordering = ["procedure", "name", "id"]

    def __str__(self):
        return f"{self.procedure} → {self.name}"

    def wants(self, event: str) -> bool:
        return self.is_active and (
            (event == Event.SUBMITTED and self.on_submitted) or (event == Event.STATUS_CHANGED and self.on_status_changed)
        )


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("送信待ち")
        SENDING = "sending", _("送信中")
        DELIVERED = "delivered", _("送信済み")
        FAILED = "failed", _("失敗")

    # The X-Govtech-Delivery header: the same on every attempt and resend, so the receiver can drop duplicates.
    delivery_id = models.UUIDField(_("配信 ID"), default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("連携先")
    )
    application = models.ForeignKey(
        "procedures.Application", on_delete=models.CASCADE, related_name="webhook_deliveries", verbose_name=_("申請")
    )
    event = models.CharField(_("イベント"), max_length=40, choices=Event.choices)
    payload = EncryptedJSONField(_("送信内容"), default=dict)
    status = models.CharField(_("状態"), max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("試行回数"), default=0)
    next_attempt_at = models.DateTimeField(_("次の送信"), null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(_("最後のエラー"), max_length=300, blank=True)
    delivered_at = models.DateTimeField(_("送信日時"), null=True, blank=True)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("連携の送信")
        verbose_name_plural = _("連携の送信")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self):
        return f"{self.get_event_display()} {self.delivery_id}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log", verbose_name=_("送信")
    )
    number = models.PositiveIntegerField(_("回"))
    started_at = models.DateTimeField(_("開始"))
    status_code = models.PositiveIntegerField(_("応答コード"), null=True, blank=True)
    error = models.CharField(_("エラー"), max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(_("所要時間（ミリ秒）"), default=0)

    class Meta:
        verbose_name = _("送信の記録")
        verbose_name_plural = _("送信の記録")
        ordering = ["delivery", "number", "id"]

    def __str__(self):
        return f"{self.delivery_id} #{self.number}"
