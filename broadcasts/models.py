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
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

MULTICAST_MAX_RECIPIENTS = 500
BROADCAST_MAX_MESSAGES = 5
RETURNED_REASON_MAX = 500


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
    # The segment's rules as they were when the broadcast was submitted: what the approver approved
    # and what every run sends to, even if the segment is edited afterwards.
    segment_rules = models.JSONField(_("セグメントの条件（申請時点）"), null=True, blank=True, editable=False)
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
    # Why it was sent back to draft (by the approver, or withdrawn by its author); cleared on submit.
    returned_reason = models.TextField(_("差し戻しの理由"), max_length=RETURNED_REASON_MAX, blank=True)
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


# --------------------------------------------------------------------------
# Push-and-confirm benefit campaigns (broadcasts/campaigns.py): a yes/no question pushed to each
# eligible resident; "yes" completes an application of the campaign's procedure.
# --------------------------------------------------------------------------

CAMPAIGN_QUESTION_MAX = 240  # LINE: the text of a confirm template
CAMPAIGN_BUTTON_LABEL_MAX = 20  # LINE: a template action's label
CAMPAIGN_MATCH_VALUE_MAX = 200


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("下書き")
        SENDING = "sending", _("送信中")
        OPEN = "open", _("回答受付中")
        CLOSED = "closed", _("締め切り")

    class MatchBy(models.TextChoices):
        ATTRIBUTE = "attribute", _("住民の属性")
        LINE_USER_ID = "line_user_id", _("LINE ユーザーID")

    name = models.CharField(_("名前（管理用）"), max_length=100)
    department = models.ForeignKey(
        "staff.Department",
        verbose_name=_("担当部署"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
    )
    procedure = models.ForeignKey(
        "procedures.Procedure",
        verbose_name=_("手続き"),
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text=_("「はい」と答えた住民の申請を、この手続きの公開中のバージョンで「完了」として作成します。"),
    )
    # {step key: answer} in the engine's vocabulary, checked against the procedure's published spec.
    fixed_answers = models.JSONField(
        _("固定の回答"),
        default=dict,
        blank=True,
        help_text=_('手続きのステップのキーごとの回答。例: {"agree": true, "kind": "cash"}'),
    )
    question = models.TextField(
        _("質問文"),
        max_length=CAMPAIGN_QUESTION_MAX,
        help_text=_("全員に同じ文面が届きます。氏名などの個人情報や差し込み（{…}）は使えません。"),
    )
    yes_label = models.CharField(_("「はい」のボタン"), max_length=CAMPAIGN_BUTTON_LABEL_MAX, default=_("申請する"))
    no_label = models.CharField(_("「いいえ」のボタン"), max_length=CAMPAIGN_BUTTON_LABEL_MAX, default=_("申請しない"))
    deadline = models.DateTimeField(_("回答期限"))
    reminder_after_days = models.PositiveSmallIntegerField(
        _("再通知までの日数"),
        null=True,
        blank=True,
        help_text=_("送信からこの日数が過ぎても未回答の住民に、1回だけ再通知します。空欄は再通知しません。"),
    )
    reminder_text = models.TextField(
        _("再通知の文面"), max_length=CAMPAIGN_QUESTION_MAX, blank=True, help_text=_("質問の前に送ります。")
    )
    match_by = models.CharField(_("照合する項目"), max_length=20, choices=MatchBy.choices, default=MatchBy.ATTRIBUTE)
    match_attribute = models.ForeignKey(
        "residents.Attribute",
        verbose_name=_("照合する属性"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text=_("「住民の属性」で照合するとき（テキストか数値の属性）。"),
    )
    key_column = models.CharField(
        _("CSV の照合列の見出し"),
        max_length=100,
        default=_("対象者番号"),
        help_text=_("CSV の1行目（見出し）にあるこの列の値で住民を照合します。ほかの列は取り込みません。"),
    )
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.DRAFT)
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
    sent_at = models.DateTimeField(_("送信日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("申請確認キャンペーン")
        verbose_name_plural = _("申請確認キャンペーン")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    def clean(self):
        from broadcasts.campaigns import campaign_problems  # the campaign services import these models

        problems = campaign_problems(self)
        if problems:
            raise ValidationError(problems)


class CampaignRecipient(models.Model):
    """One row of a campaign's CSV: an eligible person, matched to a resident or not."""

    class Answer(models.TextChoices):
        NONE = "none", _("未回答")
        YES = "yes", _("はい")
        NO = "no", _("いいえ")

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="recipients", verbose_name=_("キャンペーン")
    )
    row_number = models.PositiveIntegerField(_("CSV の行番号"))
    # The eligibility id (or LINE user id) from the CSV: personal-ish, kept for matching, never logged.
    match_value = models.CharField(_("照合キー"), max_length=CAMPAIGN_MATCH_VALUE_MAX)
    resident = models.ForeignKey(
        "residents.Resident",
        verbose_name=_("住民"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaign_recipients",
    )
    # SHA-256 of the random token in the yes/no buttons last pushed (the token itself is never stored).
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    answer = models.CharField(_("回答"), max_length=10, choices=Answer.choices, default=Answer.NONE)
    answered_at = models.DateTimeField(_("回答日時"), null=True, blank=True)
    application = models.ForeignKey(
        "procedures.Application",
        verbose_name=_("申請"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    pushed_at = models.DateTimeField(_("送信日時"), null=True, blank=True)
    reminded_at = models.DateTimeField(_("再通知日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("キャンペーンの対象者")
        verbose_name_plural = _("キャンペーンの対象者")
        ordering = ["campaign", "row_number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "match_value"], name="campaign_recipient_once"),
        ]
        indexes = [models.Index(fields=["campaign", "pushed_at"], name="campaign_recipient_pushed")]

    def __str__(self):
        return f"{self.campaign} #{self.row_number}"


# Rich menus live in their own module; importing them here registers them with the app.
from broadcasts.richmenu.models import (  # noqa: E402, F401
    DisasterModeSwitch,
    RichMenu,
    RichMenuArea,
    RichMenuDeployment,
    RichMenuLink,
    RichMenuTapCount,
)
