"""Messages to many residents.

    Broadcast (what staff compose: up to 5 messages, audience, schedule, approval)
      -> BroadcastRun (one send of it: the recipients frozen at start, counts, progress)
        -> BroadcastChunk (at most 500 recipients, one multicast call with its own X-Line-Retry-Key)

A repeating broadcast has one run per occurrence. A chunk's recipients and retry key never change
after the chunk is written, so a worker killed mid-send and its successor send the same request
and LINE (409 on a repeated key) delivers each recipient at most once.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

MULTICAST_MAX_RECIPIENTS = 500
BROADCAST_MAX_MESSAGES = 5


class Broadcast(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("下書き")
        AWAITING_APPROVAL = "awaiting_approval", _("承認待ち")
        SCHEDULED = "scheduled", _("配信予約済み")
        SENDING = "sending", _("配信中")
        SENT = "sent", _("配信済み")
        CANCELLED = "cancelled", _("取り消し")
        REFUSED = "refused", _("配信できませんでした")

    class Audience(models.TextChoices):
        EVERYONE = "everyone", _("友だち全員")
        SEGMENT = "segment", _("セグメント")
        CATEGORY = "category", _("受信カテゴリ")

    class Recurrence(models.TextChoices):
        NONE = "none", _("繰り返さない")
        DAILY = "daily", _("毎日")
        WEEKLY = "weekly", _("毎週")
        MONTHLY = "monthly", _("毎月")

    title = models.CharField(_("件名（管理用）"), max_length=100)
    department = models.ForeignKey(
        "staff.Department",
        verbose_name=_("担当部署"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="broadcasts",
    )
    # The composer's messages (see broadcasts/compose.py); rendered into LINE messages when sent.
    messages = models.JSONField(_("メッセージ"), default=list, blank=True)
    audience = models.CharField(_("配信先"), max_length=20, choices=Audience.choices, default=Audience.EVERYONE)
    segment = models.ForeignKey(
        "residents.Segment",
        verbose_name=_("セグメント"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="broadcasts",
    )
    category = models.ForeignKey(
        "residents.Category",
        verbose_name=_("カテゴリ"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="broadcasts",
        help_text=_("この配信の話題。受信設定でこのカテゴリを選んでいない住民には届きません（緊急配信を除く）。"),
    )
    is_emergency = models.BooleanField(
        _("緊急配信"), default=False, help_text=_("受信設定にかかわらず、配信先の全員に届けます（災害情報など）。")
    )
    send_at = models.DateTimeField(_("配信日時"), null=True, blank=True, help_text=_("空欄はすぐに配信します。"))
    recurrence = models.CharField(_("繰り返し"), max_length=10, choices=Recurrence.choices, default=Recurrence.NONE)
    recurrence_weekdays = models.JSONField(_("曜日"), default=list, blank=True, help_text=_("0=月曜 … 6=日曜"))
    recurrence_until = models.DateField(_("繰り返しの終了日"), null=True, blank=True)
    excluded_dates = models.JSONField(_("配信しない日"), default=list, blank=True, help_text=_("年末年始など。"))
    next_run_at = models.DateTimeField(_("次の配信日時"), null=True, blank=True, db_index=True)
    requires_approval = models.BooleanField(_("承認が必要"), default=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("承認者"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    approved_at = models.DateTimeField(_("承認日時"), null=True, blank=True)
    status = models.CharField(_("状態"), max_length=20, choices=Status.choices, default=Status.DRAFT)
    refused_reason = models.TextField(_("配信できなかった理由"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("作成者"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("一斉配信")
        verbose_name_plural = _("一斉配信")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.title


class BroadcastRun(models.Model):
    """One send of a broadcast (a repeating broadcast has one per occurrence)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("準備中")
        SENDING = "sending", _("配信中")
        DONE = "done", _("完了")
        REFUSED = "refused", _("配信できませんでした")
        CANCELLED = "cancelled", _("取り消し")

    broadcast = models.ForeignKey(Broadcast, on_delete=models.PROTECT, related_name="runs", verbose_name=_("一斉配信"))
    scheduled_for = models.DateTimeField(_("予定日時"))
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.PENDING)
    # The LINE messages exactly as sent, frozen when the run is prepared.
    line_messages = models.JSONField(_("LINE メッセージ"), default=list, blank=True)
    recipients_total = models.PositiveIntegerField(_("配信対象"), default=0)
    skipped_blocked = models.PositiveIntegerField(_("ブロック中のため除外"), default=0)
    skipped_opted_out = models.PositiveIntegerField(_("受信設定により除外"), default=0)
    delivered = models.PositiveIntegerField(_("配信済み"), default=0)
    failed = models.PositiveIntegerField(_("失敗"), default=0)
    refused_reason = models.TextField(_("配信できなかった理由"), blank=True)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    started_at = models.DateTimeField(_("開始日時"), null=True, blank=True)
    finished_at = models.DateTimeField(_("終了日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("配信の実行")
        verbose_name_plural = _("配信の実行")
        ordering = ["-scheduled_for", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["broadcast", "scheduled_for"], name="broadcast_run_once_per_occurrence")
        ]

    def __str__(self):
        return f"{self.broadcast} {self.scheduled_for:%Y-%m-%d %H:%M}"


class BroadcastChunk(models.Model):
    """At most 500 recipients of a run: one multicast request, retried with the same retry key."""

    class Status(models.TextChoices):
        PENDING = "pending", _("送信待ち")
        SENDING = "sending", _("送信中")
        SENT = "sent", _("送信済み")
        FAILED = "failed", _("失敗")

    run = models.ForeignKey(BroadcastRun, on_delete=models.CASCADE, related_name="chunks", verbose_name=_("配信の実行"))
    position = models.PositiveIntegerField(_("番号"))
    line_user_ids = models.JSONField(_("宛先"))
    recipient_count = models.PositiveIntegerField(_("宛先数"))
    retry_key = models.UUIDField(_("リトライキー"), default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("送信回数"), default=0)
    next_attempt_at = models.DateTimeField(_("次の送信日時"))
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_until = models.DateTimeField(_("送信中の期限"), null=True, blank=True)
    last_error = models.TextField(_("最後のエラー"), blank=True)
    line_request_id = models.CharField(_("LINE のリクエストID"), max_length=100, blank=True)
    sent_at = models.DateTimeField(_("送信日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("配信の単位（500人まで）")
        verbose_name_plural = _("配信の単位（500人まで）")
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="broadcast_chunk_position_unique")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="broadcast_chunk_due")]

    def __str__(self):
        return f"{self.run} #{self.position}"
