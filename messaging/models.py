"""The LINE channel's durable state: inbox (webhook events), outbox (messages to LINE), followers.

Inbox: every webhook event is one `InboxEvent` row, unique by LINE's `webhookEventId`, so a
redelivery is a no-op. Workers process one resident's pending events in LINE's timestamp order
while holding that resident's `LineUser` row (SELECT ... FOR UPDATE SKIP LOCKED).

Outbox: every message to LINE is an `OutboxMessage` row written in the same transaction as the
conversation step that caused it. Its `retry_key` is fixed at creation and reused for every push
retry; a reply is attempted at most once (`reply_attempted_at`). A reply whose outcome LINE
never told us (time-out, 5xx) is not pushed again blindly: the row becomes "unknown" and staff
decide (admin action "プッシュで再送").

Personal data: an inbox row keeps the raw event only while it may still be processed (it is
redacted once done, ignored or parked); outbox payloads hold what the engine chose to show
(sensitive answers are masked).
"""

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from govtech.crypto import EncryptedJSONField

DEFAULT_GREETING = (
    "友だち追加ありがとうございます。\n"
    "このアカウントでは、市役所の手続きを LINE からお申し込みいただけます。\n"
    "手続きの名前（例：「粗大ごみ」）を送ってください。何か送っていただくと、受付中の手続きの一覧を表示します。"
)


class LineChannelSettings(models.Model):
    """Settings of the LINE channel that staff edit in the admin (a single row)."""

    greeting_text = models.TextField(
        _("友だち追加のあいさつ"),
        max_length=5000,
        default=DEFAULT_GREETING,
        help_text=_("友だち追加（ブロック解除を含む）のときに送るメッセージ。5000文字まで。"),
    )
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("LINE チャネル設定")
        verbose_name_plural = _("LINE チャネル設定")

    def __str__(self):
        return str(_("LINE チャネル設定"))

    def save(self, *args, **kwargs):
        self.pk = 1  # a singleton
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> "LineChannelSettings":
        settings, _created = cls.objects.get_or_create(pk=1)
        return settings


class LineUser(models.Model):
    """A LINE user who talks to the channel: follow state, and the row workers lock to claim them."""

    line_user_id = models.CharField(_("LINE ユーザーID"), max_length=64, unique=True)
    resident = models.ForeignKey(
        "residents.Resident",
        verbose_name=_("住民"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    is_following = models.BooleanField(_("友だち"), default=True, help_text=_("外れている場合はブロックされています。"))
    followed_at = models.DateTimeField(_("友だち追加日時"), null=True, blank=True)
    blocked_at = models.DateTimeField(_("ブロック日時"), null=True, blank=True)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("LINE ユーザー")
        verbose_name_plural = _("LINE ユーザー")
        ordering = ["-updated_at"]

    def __str__(self):
        return self.line_user_id


class LineFollowEvent(models.Model):
    """Follow history: one row per follow / unfollow (block) event."""

    class Kind(models.TextChoices):
        FOLLOW = "follow", _("友だち追加")
        UNFOLLOW = "unfollow", _("ブロック")

    line_user = models.ForeignKey(
        LineUser, on_delete=models.CASCADE, related_name="follow_events", verbose_name=_("LINE ユーザー")
    )
    kind = models.CharField(_("種類"), max_length=10, choices=Kind.choices)
    is_unblocked = models.BooleanField(_("ブロック解除"), default=False)
    occurred_at = models.DateTimeField(_("発生日時"))
    webhook_event_id = models.CharField(_("Webhook イベントID"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("記録日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("友だち追加・ブロックの履歴")
        verbose_name_plural = _("友だち追加・ブロックの履歴")
        ordering = ["-occurred_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} {timezone.localtime(self.occurred_at):%Y-%m-%d %H:%M}"


class InboxEvent(models.Model):
    """One webhook event from LINE, stored before it is processed."""

    class Status(models.TextChoices):
        PENDING = "pending", _("未処理")
        DONE = "done", _("処理済み")
        IGNORED = "ignored", _("対象外")
        FAILED = "failed", _("失敗（保留）")

    webhook_event_id = models.CharField(_("Webhook イベントID"), max_length=64, unique=True)
    line_user_id = models.CharField(_("LINE ユーザーID"), max_length=64, blank=True, db_index=True)
    source_type = models.CharField(_("送信元の種類"), max_length=20, blank=True)
    event_type = models.CharField(_("イベントの種類"), max_length=40)
    message_type = models.CharField(_("メッセージの種類"), max_length=20, blank=True)
    line_timestamp = models.DateTimeField(_("LINE の発生日時"))
    is_redelivery = models.BooleanField(_("再送"), default=False)
    payload = EncryptedJSONField(
        _("イベント"), help_text=_("処理が終わる（または保留になる）と、住民が送った内容は消去されます。")
    )
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("処理回数"), default=0)
    last_error = models.TextField(_("最後のエラー"), blank=True)
    attempt_started_at = models.DateTimeField(
        _("処理中の回の開始日時"),
        null=True,
        blank=True,
        help_text=_(
            "長く待った受信イベントの処理は、始める前に回数を数えます。完了しないまま残っていれば、その回は作業の強制終了や時間切れで中断されています。"
        ),
    )
    ignored_reason = models.CharField(_("対象外の理由"), max_length=200, blank=True)
    received_at = models.DateTimeField(_("受信日時"), auto_now_add=True)
    processed_at = models.DateTimeField(_("処理日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("受信イベント")
        verbose_name_plural = _("受信イベント")
        ordering = ["-line_timestamp", "-id"]
        indexes = [
            models.Index(fields=["line_user_id", "status", "line_timestamp", "id"], name="inbox_user_queue"),
            models.Index(fields=["status", "received_at"], name="inbox_status_received"),
        ]

    def __str__(self):
        return f"{self.event_type} {self.webhook_event_id}"


class OutboxMessage(models.Model):
    """Up to five LINE messages for one resident, sent by reply or push."""

    class Kind(models.TextChoices):
        REPLY = "reply", _("応答（reply）")
        PUSH = "push", _("プッシュ（push）")

    class Status(models.TextChoices):
        PENDING = "pending", _("送信待ち")
        SENDING = "sending", _("送信中")
        SENT = "sent", _("送信済み")
        FAILED = "failed", _("失敗")
        # A reply whose outcome is unknown (time-out, 5xx): it may have arrived. Not sent again
        # unless staff, having checked, resend it by push.
        UNKNOWN = "unknown", _("送信結果不明")

    line_user_id = models.CharField(_("LINE ユーザーID"), max_length=64, db_index=True)
    inbox_event = models.ForeignKey(
        InboxEvent,
        verbose_name=_("受信イベント"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="outbox_messages",
    )
    kind = models.CharField(_("送信方法"), max_length=10, choices=Kind.choices)
    reply_token = models.CharField(_("応答トークン"), max_length=100, blank=True)
    reply_token_expires_at = models.DateTimeField(_("応答トークンの期限"), null=True, blank=True)
    reply_attempted_at = models.DateTimeField(
        _("応答を試みた日時"), null=True, blank=True, help_text=_("応答（reply）は一度しか試みません。")
    )
    payload = EncryptedJSONField(_("メッセージ"), help_text=_("LINE に送るメッセージ（最大5件）。"))
    retry_key = models.UUIDField(_("リトライキー"), default=uuid.uuid4, unique=True, editable=False)
    retry_key_issued_at = models.DateTimeField(
        _("リトライキーの発行日時"), default=timezone.now, help_text=_("LINE はリトライキーを24時間有効とします。")
    )
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("送信回数"), default=0)
    next_attempt_at = models.DateTimeField(_("次の送信日時"), db_index=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_until = models.DateTimeField(_("送信中の期限"), null=True, blank=True)
    sent_via = models.CharField(_("送信した方法"), max_length=10, choices=Kind.choices, blank=True)
    last_error = models.TextField(_("最後のエラー"), blank=True)
    line_request_id = models.CharField(_("LINE のリクエストID"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    sent_at = models.DateTimeField(_("送信日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("送信メッセージ")
        verbose_name_plural = _("送信メッセージ")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due"),
            models.Index(fields=["line_user_id", "status", "id"], name="outbox_user_queue"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.get_kind_display()} → {self.line_user_id}"
