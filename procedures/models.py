"""Builder models (definitions) and applications (runs).

A Procedure has versions. Exactly one version may be the editable draft;
publishing freezes the draft's steps into `ProcedureVersion.spec` (the JSON
of procedures/spec.py), which the engine reads and which never changes again.
Steps are django-polymorphic models, one subclass per kind; `spec_options()`
gives each kind's options in the spec's vocabulary.
"""

import unicodedata
from datetime import date
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator, URLValidator
from django.db import models
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from polymorphic.models import PolymorphicModel

from govtech.crypto import EncryptedJSONField
from procedures import spec as spec_module

# Applications are kept five years unless a procedure says otherwise (procedures/retention.py).
DEFAULT_RETENTION_DAYS = 1825
MAX_RETENTION_DAYS = 36500


class Procedure(models.Model):
    name = models.CharField(_("手続き名"), max_length=200)
    description = models.TextField(_("説明"), blank=True)
    keywords = models.TextField(
        _("開始キーワード"),
        blank=True,
        help_text=_("住民がこの言葉を送ると手続きが始まります。1行に1つ。"),
    )
    receipt_prefix = models.CharField(
        _("受付番号の接頭辞"),
        max_length=12,
        unique=True,
        help_text=_("半角英大文字と数字。例: SODAI → SODAI-2026-000123"),
    )
    department = models.ForeignKey(
        "staff.Department",
        verbose_name=_("担当部署"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="procedures",
    )
    is_open = models.BooleanField(
        _("受付中"),
        default=False,
        help_text=_("公開すると受付中になります。外すと住民は新たに始められず、進行中の会話も終了します。"),
    )
    current_version = models.OneToOneField(
        "ProcedureVersion",
        verbose_name=_("公開中のバージョン"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    retention_days = models.PositiveIntegerField(
        _("保存期間（日）"),
        default=DEFAULT_RETENTION_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text=_("申請日からこの日数を過ぎた申請（回答・添付画像を含む）は、毎日の処理で削除されます。"),
    )
    needs_staff_review = models.BooleanField(
        _("届いた申請を職員が確認する"),
        default=True,
        help_text=_(
            "外すと、届いた申請を「要対応」にせず、担当部署へのメールや日次のまとめにも含めません"
            "（受信設定のように、住民の設定を記録するだけの手続き向け）。"
        ),
    )
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)
    # Step keys whose answers the staff inbox shows as columns when the list shows only this procedure.
    list_columns = models.JSONField(_("一覧に表示する回答"), default=list, blank=True)

    class Meta:
        verbose_name = _("手続き")
        verbose_name_plural = _("手続き")
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def keyword_list(self) -> list[str]:
        return [line.strip() for line in self.keywords.splitlines() if line.strip()]

    def clean(self):
        if self.receipt_prefix and not self.receipt_prefix.isascii():
            raise ValidationError({"receipt_prefix": _("半角英大文字と数字で入力してください。")})
        self.receipt_prefix = (self.receipt_prefix or "").upper()
        if self.receipt_prefix and not all(c.isupper() or c.isdigit() for c in self.receipt_prefix):
            raise ValidationError({"receipt_prefix": _("半角英大文字と数字で入力してください。")})
        if self.pk is not None and self.receipt_prefix_is_locked():
            # Receipt numbers already given out carry the old prefix; another procedure taking it
            # over later would hand out the same numbers again.
            raise ValidationError(
                {"receipt_prefix": _("公開したことのある手続きの受付番号の接頭辞は変更できません。")}
            )

    def receipt_prefix_is_locked(self) -> bool:
        stored = Procedure.objects.filter(pk=self.pk).values_list("receipt_prefix", flat=True).first()
        return (
            stored is not None
            and stored != self.receipt_prefix
            and self.versions.exclude(status=ProcedureVersion.Status.DRAFT).exists()
        )

    @property
    def draft(self):
        return self.versions.filter(status=ProcedureVersion.Status.DRAFT).first()


class ProcedureVersion(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("下書き")
        PUBLISHED = "published", _("公開済み")

    procedure = models.ForeignKey(Procedure, on_delete=models.CASCADE, related_name="versions", verbose_name=_("手続き"))
    number = models.PositiveIntegerField(_("版"))
    status = models.CharField(_("状態"), max_length=20, choices=Status.choices, default=Status.DRAFT)
    spec = models.JSONField(_("公開時の定義"), null=True, blank=True, editable=False)
    restored_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("復元元")
    )
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    published_at = models.DateTimeField(_("公開日時"), null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("公開した職員"),
    )

    class Meta:
        verbose_name = _("手続きのバージョン")
        verbose_name_plural = _("手続きのバージョン")
        ordering = ["procedure", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["procedure", "number"], name="procedure_version_number_unique"),
            models.UniqueConstraint(
                fields=["procedure"], condition=models.Q(status="draft"), name="procedure_single_draft"
            ),
        ]

    def __str__(self):
        return f"{self.procedure.name} 第{self.number}版（{self.get_status_display()}）"

    @property
    def is_draft(self) -> bool:
        return self.status == self.Status.DRAFT


def _plain(value):
    """Decimals become int or float so the spec stays plain JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return list(value)
    return value


class PublishedVersionIsImmutable(ValidationError):
    pass


def _ensure_draft(version: ProcedureVersion):
    if version is not None and not version.is_draft:
        raise PublishedVersionIsImmutable(_("公開済みのバージョンは変更できません。下書きを編集してください。"))


class Step(PolymorphicModel):
    """One step of a draft version. Subclasses add the options of their kind."""

    kind: str = ""

    version = models.ForeignKey(ProcedureVersion, on_delete=models.CASCADE, related_name="steps", verbose_name=_("バージョン"))
    position = models.PositiveIntegerField(_("順番"), default=0, db_index=True)
    key = models.CharField(
        _("キー"),
        max_length=40,
        help_text=_("回答を保存する名前（半角英小文字・数字・_）。公開後は変えないでください。"),
    )
    label = models.TextField(_("質問・表示文"))
    help_text = models.TextField(_("補足説明"), blank=True)
    required = models.BooleanField(_("必須"), default=True)
    sensitive = models.BooleanField(
        _("機微情報"),
        default=False,
        help_text=_("氏名・住所・電話番号など。ログ・一覧・出力では伏せ字になり、LINE に表示し返しません。"),
    )
    condition = models.JSONField(_("表示条件"), null=True, blank=True)
    # Where the answer goes in the resident's profile on submission (spec.PROFILE_TARGET_*): a key,
    # not a foreign key, so that templates carry it between cities and drafts copy it as it is.
    profile_target = models.CharField(
        _("住民の属性に保存"),
        max_length=60,
        blank=True,
        help_text=_("申請されたとき、この回答で住民の属性（または受信カテゴリ）を更新します。機微情報のステップには設定できません。"),
    )

    class Meta:
        verbose_name = _("ステップ")
        verbose_name_plural = _("ステップ")
        ordering = ["version", "position", "id"]

    def __str__(self):
        return f"{self.position}. {self.label[:40]}"

    def save(self, *args, **kwargs):
        _ensure_draft(self.version)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        _ensure_draft(self.version)
        return super().delete(*args, **kwargs)

    # spec option name -> model field name, for the kind-specific options.
    option_fields: dict[str, str] = {}

    def spec_options(self) -> dict:
        return {option: _plain(getattr(self, field)) for option, field in self.option_fields.items()}

    @classmethod
    def fields_from_spec_options(cls, options: dict) -> dict:
        return {field: options[option] for option, field in cls.option_fields.items() if option in options}

    def spec_choices(self) -> list[dict]:
        return []

    def to_spec(self) -> dict:
        return {
            "key": self.key,
            "kind": self.kind,
            "label": self.label,
            "help_text": self.help_text,
            "required": self.required,
            "sensitive": self.sensitive,
            "condition": self.condition or None,
            "options": self.spec_options(),
            "choices": self.spec_choices(),
            "profile_target": self.profile_target,
        }


class MessageStep(Step):
    kind = "message"

    class Meta:
        verbose_name = _("お知らせ（表示のみ）")
        verbose_name_plural = verbose_name


class ShortTextStep(Step):
    kind = "short_text"

    class Format(models.TextChoices):
        NONE = "none", _("指定なし")
        PHONE = "phone", _("電話番号")
        POSTAL_CODE = "postal_code", _("郵便番号")
        EMAIL = "email", _("メールアドレス")
        KATAKANA = "katakana", _("カタカナ")
        REGEX = "regex", _("正規表現")

    max_length = models.PositiveIntegerField(_("最大文字数"), default=spec_module.DEFAULT_SHORT_TEXT_MAX)
    format = models.CharField(_("形式"), max_length=20, choices=Format.choices, default=Format.NONE)
    pattern = models.CharField(_("正規表現"), max_length=500, blank=True)
    pattern_hint = models.CharField(_("形式の説明"), max_length=200, blank=True, help_text=_("正規表現に合わないときに住民へ伝える説明。"))

    class Meta:
        verbose_name = _("短い文章")
        verbose_name_plural = verbose_name

    option_fields = {"max_length": "max_length", "format": "format", "pattern": "pattern", "pattern_hint": "pattern_hint"}


class LongTextStep(Step):
    kind = "long_text"
    max_length = models.PositiveIntegerField(_("最大文字数"), default=spec_module.DEFAULT_LONG_TEXT_MAX)

    class Meta:
        verbose_name = _("長い文章")
        verbose_name_plural = verbose_name

    option_fields = {"max_length": "max_length"}


class NumberStep(Step):
    kind = "number"
    min_value = models.DecimalField(_("最小値"), max_digits=14, decimal_places=2, null=True, blank=True)
    max_value = models.DecimalField(_("最大値"), max_digits=14, decimal_places=2, null=True, blank=True)
    unit = models.CharField(_("単位"), max_length=20, blank=True)
    integer = models.BooleanField(_("整数のみ"), default=True)

    class Meta:
        verbose_name = _("数値")
        verbose_name_plural = verbose_name

    option_fields = {"min": "min_value", "max": "max_value", "unit": "unit", "integer": "integer"}


def _all_weekdays():
    return list(range(7))


class DateStep(Step):
    kind = "date"
    min_days = models.IntegerField(_("何日後から"), null=True, blank=True, help_text=_("今日を0とした日数。例: 3 なら3日後から選べます。"))
    max_days = models.IntegerField(_("何日後まで"), null=True, blank=True)
    weekdays = models.JSONField(
        _("受け付ける曜日"), default=_all_weekdays, help_text=_("0=月 … 6=日 の番号のリスト。")
    )
    allow_holidays = models.BooleanField(_("祝日も選べる"), default=True)
    excluded_dates = models.JSONField(_("除外する日付"), default=list, blank=True, help_text=_("YYYY-MM-DD のリスト（年末年始など）。"))

    class Meta:
        verbose_name = _("日付")
        verbose_name_plural = verbose_name

    option_fields = {
        "min_days": "min_days",
        "max_days": "max_days",
        "weekdays": "weekdays",
        "allow_holidays": "allow_holidays",
        "excluded_dates": "excluded_dates",
    }


class ChoiceStepMixin:
    def spec_choices(self):
        return [{"value": c.value, "label": c.label, "amount": _plain(c.amount)} for c in self.choices.all()]


class SingleChoiceStep(ChoiceStepMixin, Step):
    kind = "single_choice"

    class Meta:
        verbose_name = _("選択（1つ）")
        verbose_name_plural = verbose_name


class MultipleChoiceStep(ChoiceStepMixin, Step):
    kind = "multiple_choice"
    min_selected = models.PositiveIntegerField(_("最少選択数"), default=1)
    max_selected = models.PositiveIntegerField(_("最多選択数"), null=True, blank=True)

    class Meta:
        verbose_name = _("選択（複数）")
        verbose_name_plural = verbose_name

    option_fields = {"min_selected": "min_selected", "max_selected": "max_selected"}


class YesNoStep(Step):
    kind = "yes_no"

    class Meta:
        verbose_name = _("はい／いいえ")
        verbose_name_plural = verbose_name


class ImageStep(Step):
    kind = "image"
    max_bytes = models.PositiveIntegerField(_("最大サイズ（バイト）"), default=spec_module.DEFAULT_IMAGE_MAX_BYTES)

    class Meta:
        verbose_name = _("画像")
        verbose_name_plural = verbose_name

    option_fields = {"max_bytes": "max_bytes"}


class LocationStep(Step):
    kind = "location"

    class Meta:
        verbose_name = _("位置情報")
        verbose_name_plural = verbose_name


class ConfirmationStep(Step):
    kind = "confirmation"

    class Meta:
        verbose_name = _("確認")
        verbose_name_plural = verbose_name


class CompletionStep(Step):
    kind = "completion"

    class Meta:
        verbose_name = _("完了（受付番号）")
        verbose_name_plural = verbose_name


class ExitStep(Step):
    kind = "exit"

    class Meta:
        verbose_name = _("終了（対象外）")
        verbose_name_plural = verbose_name


STEP_MODELS: dict[str, type[Step]] = {
    model.kind: model
    for model in (
        MessageStep,
        ShortTextStep,
        LongTextStep,
        NumberStep,
        DateStep,
        SingleChoiceStep,
        MultipleChoiceStep,
        YesNoStep,
        ImageStep,
        LocationStep,
        ConfirmationStep,
        CompletionStep,
        ExitStep,
    )
}
assert set(STEP_MODELS) == set(spec_module.STEP_KINDS)


class StepChoice(models.Model):
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="choices", verbose_name=_("ステップ"))
    position = models.PositiveIntegerField(_("順番"), default=0)
    value = models.CharField(_("値"), max_length=40, help_text=_("保存される値。公開後は変えないでください。"))
    label = models.CharField(_("表示名"), max_length=100)
    amount = models.DecimalField(_("金額など"), max_digits=12, decimal_places=2, default=0)

    class Meta:
        verbose_name = _("選択肢")
        verbose_name_plural = _("選択肢")
        ordering = ["step", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["step", "value"], name="step_choice_value_unique")]

    def __str__(self):
        return self.label

    def save(self, *args, **kwargs):
        _ensure_draft(self.step.version)
        super().save(*args, **kwargs)


class ComputedValue(models.Model):
    version = models.ForeignKey(ProcedureVersion, on_delete=models.CASCADE, related_name="computed_values", verbose_name=_("バージョン"))
    position = models.PositiveIntegerField(_("順番"), default=0)
    key = models.CharField(_("キー"), max_length=40)
    label = models.CharField(_("名前"), max_length=200)
    unit = models.CharField(_("単位"), max_length=20, blank=True)
    constant = models.DecimalField(_("固定額"), max_digits=14, decimal_places=2, default=0)
    terms = models.JSONField(
        _("計算式"),
        default=list,
        help_text=_('「ステップの値 × 係数」の合計。例: [{"step": "copies", "factor": 300}]'),
    )

    class Meta:
        verbose_name = _("計算項目")
        verbose_name_plural = _("計算項目")
        ordering = ["version", "position", "id"]

    def __str__(self):
        return self.label

    def save(self, *args, **kwargs):
        _ensure_draft(self.version)
        super().save(*args, **kwargs)

    def to_spec(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "constant": _plain(self.constant),
            "terms": list(self.terms or []),
        }


class ReceiptCounter(models.Model):
    """The last receipt number handed out per procedure and year (locked while incremented)."""

    procedure = models.ForeignKey(Procedure, on_delete=models.CASCADE, related_name="+")
    year = models.PositiveIntegerField()
    # Test applications from the simulator count in their own series so they never use up real numbers.
    is_test = models.BooleanField(default=False)
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["procedure", "year", "is_test"], name="receipt_counter_unique")
        ]

    def __str__(self):
        return f"{self.procedure_id}/{self.year}: {self.last_number}"


class Application(models.Model):
    class Channel(models.TextChoices):
        LINE = "line", _("LINE")
        PROXY = "proxy", _("代理入力（電話）")
        SIMULATOR = "simulator", _("シミュレーター")
        CAMPAIGN = "campaign", _("申請確認キャンペーン")

    procedure = models.ForeignKey(Procedure, on_delete=models.PROTECT, related_name="applications", verbose_name=_("手続き"))
    version = models.ForeignKey(ProcedureVersion, on_delete=models.PROTECT, related_name="applications", verbose_name=_("バージョン"))
    receipt_number = models.CharField(_("受付番号"), max_length=40, unique=True)
    resident = models.ForeignKey(
        "residents.Resident", null=True, blank=True, on_delete=models.SET_NULL, related_name="applications",
        verbose_name=_("住民"),
    )
    line_user_id = models.CharField(_("LINE ユーザーID"), max_length=64, blank=True)
    submission_key = models.CharField(max_length=80, editable=False)
    answers = EncryptedJSONField(_("回答"), default=dict)
    computed = EncryptedJSONField(_("計算項目"), default=dict)
    is_test = models.BooleanField(_("テスト"), default=False, help_text=_("シミュレーターからの申請。一覧と出力には含まれません。"))
    submitted_at = models.DateTimeField(_("申請日時"))
    channel = models.CharField(_("受付方法"), max_length=20, choices=Channel.choices, default=Channel.LINE)
    # The staff member who typed a resident's application in (a phone request: 代理入力).
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="entered_applications", verbose_name=_("代理入力した職員"),
    )
    # The status workflow (procedures/workflow.py). Filled with the procedure's initial status when
    # an application is saved without one (see application_status_default below).
    status = models.ForeignKey(
        "ApplicationStatus", on_delete=models.PROTECT, related_name="applications", verbose_name=_("状態"),
    )
    # Triage: who in the department handles it, and whether something waits for staff (a new
    # application, a resident's reply, a corrected resubmission).
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_applications", verbose_name=_("担当"),
    )
    needs_action = models.BooleanField(_("要対応"), default=False, db_index=True)
    # 管理項目: values of the procedure's StaffFields by key, for staff only (never shown to residents).
    staff_values = models.JSONField(_("管理項目"), default=dict, blank=True)

    class Meta:
        verbose_name = _("申請")
        verbose_name_plural = _("申請")
        ordering = ["-submitted_at"]
        constraints = [
            models.UniqueConstraint(fields=["line_user_id", "submission_key"], name="application_submission_once"),
        ]

    def __str__(self):
        return self.receipt_number


class ConversationSession(models.Model):
    """The engine state of one resident (or one simulator run). One row per conversation partner."""

    line_user_id = models.CharField(max_length=64, unique=True)
    state = EncryptedJSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("会話の状態")
        verbose_name_plural = _("会話の状態")

    def __str__(self):
        return self.line_user_id


# --------------------------------------------------------------------------
# Status workflow (procedures/workflow.py): statuses and transitions per procedure, history
# --------------------------------------------------------------------------

STATUS_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# The stable code of the status a resident's withdrawal (取下げ) moves an application to.
WITHDRAWN_CODE = "withdrawn"
NOTICE_TEMPLATE_MAX = 1000

# What every new procedure starts with (a data migration copies these at the time it was written).
DEFAULT_STATUSES = (
    {
        "code": "received", "label": "受付", "order": 10,
        "is_initial": True, "is_final": False, "allows_withdrawal": True,
        "notify_template": "",
    },
    {
        "code": "reviewing", "label": "確認中", "order": 20,
        "is_initial": False, "is_final": False, "allows_withdrawal": True,
        "notify_template": "「{手続き名}」の申請（受付番号：{受付番号}）の内容を確認しています。\n現在の状態：{状態}",
    },
    {
        "code": "correction_requested", "label": "修正依頼中", "order": 30,
        "is_initial": False, "is_final": False, "allows_withdrawal": False,
        "notify_template": (
            "「{手続き名}」の申請（受付番号：{受付番号}）について、修正をお願いしたい点があります。"
            "市からのご案内をご確認ください。\n現在の状態：{状態}"
        ),
    },
    {
        "code": "completed", "label": "完了", "order": 40,
        "is_initial": False, "is_final": True, "allows_withdrawal": False,
        "notify_template": "「{手続き名}」の申請（受付番号：{受付番号}）の手続きが完了しました。\n現在の状態：{状態}",
    },
    {
        "code": "rejected", "label": "却下", "order": 50,
        "is_initial": False, "is_final": True, "allows_withdrawal": False,
        "notify_template": (
            "「{手続き名}」の申請（受付番号：{受付番号}）は、お受けすることができませんでした。"
            "詳しくは担当課へお問い合わせください。\n現在の状態：{状態}"
        ),
    },
    {
        "code": WITHDRAWN_CODE, "label": "取下げ", "order": 60,
        "is_initial": False, "is_final": True, "allows_withdrawal": False,
        "notify_template": "「{手続き名}」の申請（受付番号：{受付番号}）を取り下げました。\n現在の状態：{状態}",
    },
)

# (from code, to code): staff may move an application along these; each sends the notice of its target.
DEFAULT_TRANSITIONS = (
    ("received", "reviewing"),
    ("received", "correction_requested"),
    ("received", "completed"),
    ("received", "rejected"),
    ("received", WITHDRAWN_CODE),
    ("reviewing", "correction_requested"),
    ("reviewing", "completed"),
    ("reviewing", "rejected"),
    ("reviewing", WITHDRAWN_CODE),
    ("correction_requested", "reviewing"),
    ("correction_requested", "completed"),
    ("correction_requested", "rejected"),
    ("correction_requested", WITHDRAWN_CODE),
)


class ApplicationStatus(models.Model):
    """One status of a procedure's applications (受付, 確認中, …), defined by staff."""

    procedure = models.ForeignKey(
        Procedure, on_delete=models.CASCADE, related_name="statuses", verbose_name=_("手続き")
    )
    code = models.CharField(
        _("コード"),
        max_length=40,
        validators=[
            RegexValidator(STATUS_CODE_PATTERN, _("半角英小文字で始め、半角英小文字・数字・「_」で40文字以内にしてください。"))
        ],
        help_text=_("変わらない識別子（半角英小文字・数字・_）。作成後は変更できません。取下げは withdrawn です。"),
    )
    label = models.CharField(_("表示名"), max_length=40, help_text=_("住民と職員に表示される名前。例: 確認中"))
    order = models.PositiveIntegerField(_("並び順"), default=0)
    is_initial = models.BooleanField(_("最初の状態"), default=False, help_text=_("申請を受け付けたときの状態（1つだけ）。"))
    is_final = models.BooleanField(_("終了状態"), default=False, help_text=_("完了・却下・取下げなど、手続きが終わった状態。"))
    allows_withdrawal = models.BooleanField(
        _("住民が取り下げできる"), default=False, help_text=_("この状態の間は、住民が LINE から申請を取り下げられます。")
    )
    notify_template = models.TextField(
        _("お知らせの文面"),
        blank=True,
        max_length=NOTICE_TEMPLATE_MAX,
        help_text=_(
            "この状態になったとき LINE で住民に送る文面。空なら送りません。差し込める項目: "
            "{受付番号} {手続き名} {状態} {リンク}。回答（氏名など）は差し込めません。"
        ),
    )
    notify_link = models.URLField(
        _("お知らせのリンク"),
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text=_("{リンク} に入る URL（案内ページなど）。"),
    )

    class Meta:
        verbose_name = _("申請の状態")
        verbose_name_plural = _("申請の状態")
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["procedure", "code"], name="application_status_code_unique"),
            models.UniqueConstraint(fields=["procedure", "label"], name="application_status_label_unique"),
            # "Exactly one initial status" is checked where statuses are edited (the admin's inline), not
            # by a constraint: moving the mark from one status to another is then a single save.
        ]

    def __str__(self):
        return self.label

    def clean(self):
        from procedures.workflow import notice_template_problems  # the workflow imports these models

        errors = {}
        if self.is_final and self.allows_withdrawal:
            errors["allows_withdrawal"] = _("終了状態では取り下げできません。")
        if self.is_initial and self.is_final:
            errors["is_final"] = _("最初の状態を終了状態にはできません。")
        problems = notice_template_problems(
            self.notify_template,
            procedure=self.procedure if self.procedure_id else None,
            link=self.notify_link,
        )
        if problems:
            errors["notify_template"] = problems
        if errors:
            raise ValidationError(errors)


class StatusTransition(models.Model):
    """Staff may move an application from one status to another (and then notify the resident)."""

    procedure = models.ForeignKey(
        Procedure, on_delete=models.CASCADE, related_name="status_transitions", verbose_name=_("手続き")
    )
    from_status = models.ForeignKey(
        ApplicationStatus, on_delete=models.CASCADE, related_name="transitions_out", verbose_name=_("変更前")
    )
    to_status = models.ForeignKey(
        ApplicationStatus, on_delete=models.CASCADE, related_name="transitions_in", verbose_name=_("変更後")
    )
    notify = models.BooleanField(
        _("LINE で知らせる"), default=True, help_text=_("変更後の状態にお知らせの文面があれば、住民に LINE で送ります。")
    )

    class Meta:
        verbose_name = _("状態の変更ルール")
        verbose_name_plural = _("状態の変更ルール")
        ordering = ["from_status__order", "to_status__order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["from_status", "to_status"], name="status_transition_unique"),
            models.CheckConstraint(
                condition=~models.Q(from_status=models.F("to_status")), name="status_transition_not_to_itself"
            ),
        ]

    def __str__(self):
        return f"{self.from_status} → {self.to_status}"

    def clean(self):
        errors = {}
        for name in ("from_status", "to_status"):
            status_id = getattr(self, f"{name}_id")
            if status_id is not None and self.procedure_id is not None:
                if getattr(self, name).procedure_id != self.procedure_id:
                    errors[name] = _("この手続きの状態を選んでください。")
        if self.from_status_id is not None and self.from_status_id == self.to_status_id:
            errors["to_status"] = _("同じ状態への変更は設定できません。")
        if errors:
            raise ValidationError(errors)


class ApplicationStatusChange(models.Model):
    """History: one row per status change of an application (who, how, from what, to what)."""

    class Via(models.TextChoices):
        STAFF = "staff", _("職員")
        RESIDENT = "resident", _("住民")
        SYSTEM = "system", _("システム")

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="status_changes", verbose_name=_("申請")
    )
    from_status = models.ForeignKey(
        ApplicationStatus, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("変更前")
    )
    to_status = models.ForeignKey(
        ApplicationStatus, on_delete=models.PROTECT, related_name="+", verbose_name=_("変更後")
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("職員"),
    )
    via = models.CharField(_("変更した人"), max_length=10, choices=Via.choices)
    note = models.TextField(_("メモ"), blank=True)
    notified = models.BooleanField(_("LINE で知らせた"), default=False)
    created_at = models.DateTimeField(_("日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("状態の変更履歴")
        verbose_name_plural = _("状態の変更履歴")
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.application_id}: {self.from_status} → {self.to_status}"


STAFF_FIELD_TEXT_MAX = 200
STAFF_FIELD_LONG_TEXT_MAX = 2000


class StaffField(models.Model):
    """A 管理項目 of a procedure: something staff record on each application (手数料受領日, memo…).

    Values live in Application.staff_values by key; residents never see them (LINE, 申請状況).
    """

    class Kind(models.TextChoices):
        TEXT = "text", _("短い文章")
        LONG_TEXT = "long_text", _("長い文章")
        DATE = "date", _("日付")
        NUMBER = "number", _("数値")
        YES_NO = "yes_no", _("はい／いいえ")
        CHOICE = "choice", _("選択（1つ）")

    procedure = models.ForeignKey(
        Procedure, on_delete=models.CASCADE, related_name="staff_fields", verbose_name=_("手続き")
    )
    key = models.CharField(
        _("キー"),
        max_length=40,
        validators=[
            RegexValidator(STATUS_CODE_PATTERN, _("半角英小文字で始め、半角英小文字・数字・「_」で40文字以内にしてください。"))
        ],
        help_text=_("値を保存する名前（半角英小文字・数字・_）。作成後は変更できません。"),
    )
    label = models.CharField(_("項目名"), max_length=100)
    kind = models.CharField(_("種類"), max_length=20, choices=Kind.choices, default=Kind.TEXT)
    choices = models.TextField(_("選択肢"), blank=True, help_text=_("「選択（1つ）」のとき、1行に1つ。"))
    order = models.PositiveIntegerField(_("並び順"), default=0)

    class Meta:
        verbose_name = _("管理項目")
        verbose_name_plural = _("管理項目")
        ordering = ["order", "id"]
        constraints = [models.UniqueConstraint(fields=["procedure", "key"], name="staff_field_key_unique")]

    def __str__(self):
        return self.label

    @property
    def choice_list(self) -> list[str]:
        return list(dict.fromkeys(line.strip() for line in (self.choices or "").splitlines() if line.strip()))

    def clean(self):
        if self.kind == self.Kind.CHOICE and not self.choice_list:
            raise ValidationError({"choices": _("「選択（1つ）」の項目には選択肢を1行に1つ入力してください。")})

    def parse(self, raw):
        """The value to store for what staff entered (None: empty); ValidationError with a Japanese message."""
        text = unicodedata.normalize("NFKC", str(raw if raw is not None else "")).strip()
        if self.kind == self.Kind.LONG_TEXT:
            text = str(raw if raw is not None else "").strip()  # kept as typed: line breaks, full-width
        elif self.kind == self.Kind.TEXT:
            text = str(raw if raw is not None else "").strip()
        if text == "":
            return None
        if self.kind == self.Kind.TEXT:
            if "\n" in text or "\r" in text:
                raise ValidationError(_("1行で入力してください（改行は「長い文章」の項目で使えます）。"))
            if len(text) > STAFF_FIELD_TEXT_MAX:
                raise ValidationError(_("%(max)s文字以内で入力してください。") % {"max": STAFF_FIELD_TEXT_MAX})
            return text
        if self.kind == self.Kind.LONG_TEXT:
            if len(text) > STAFF_FIELD_LONG_TEXT_MAX:
                raise ValidationError(_("%(max)s文字以内で入力してください。") % {"max": STAFF_FIELD_LONG_TEXT_MAX})
            return text
        if self.kind == self.Kind.DATE:
            try:
                return date.fromisoformat(text.replace("/", "-")).isoformat()
            except ValueError:
                raise ValidationError(_("日付は 2026-04-01 のように、年-月-日で入力してください。")) from None
        if self.kind == self.Kind.NUMBER:
            try:
                number = Decimal(text.replace(",", ""))
            except InvalidOperation:
                raise ValidationError(_("数値を半角数字で入力してください（例: 1200）。")) from None
            if not number.is_finite() or abs(number) >= Decimal("1e12"):
                raise ValidationError(_("数値を半角数字で入力してください（例: 1200）。"))
            return format(number.normalize(), "f") if number != number.to_integral_value() else str(int(number))
        if self.kind == self.Kind.YES_NO:
            if text in ("yes", "はい"):
                return True
            if text in ("no", "いいえ"):
                return False
            raise ValidationError(_("「はい」か「いいえ」を選んでください。"))
        if text not in self.choice_list:
            raise ValidationError(_("選択肢から選んでください。"))
        return text

    def display(self, value) -> str:
        """The stored value in words (for pages, the print page and the CSV export)."""
        if value is None or value == "":
            return ""
        if self.kind == self.Kind.YES_NO:
            return str(_("はい")) if value is True else str(_("いいえ")) if value is False else str(value)
        return str(value)


# --------------------------------------------------------------------------
# Messages with the resident (procedures/correspondence.py)
# --------------------------------------------------------------------------

APPLICATION_MESSAGE_MAX = 1000


class ApplicationMessage(models.Model):
    """One message about an application, either way. Every message is kept here, not only in LINE."""

    class Direction(models.TextChoices):
        TO_RESIDENT = "to_resident", _("職員→住民")
        FROM_RESIDENT = "from_resident", _("住民→職員")

    class Delivery(models.TextChoices):
        QUEUED = "queued", _("LINE で送信")
        UNREACHABLE = "unreachable", _("LINE で届けられない相手")
        RECEIVED = "received", _("受信")

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="messages", verbose_name=_("申請")
    )
    direction = models.CharField(_("向き"), max_length=20, choices=Direction.choices)
    # A resident's reply may well carry personal data: encrypted at rest like the answers.
    text = EncryptedJSONField(_("本文"), default=str)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("送信した職員"),
    )
    delivery = models.CharField(_("配信"), max_length=20, choices=Delivery.choices)
    # The staff form's one-time key: sending the same form twice (a double click, a reload) sends once.
    client_key = models.CharField(max_length=40, blank=True, editable=False)
    created_at = models.DateTimeField(_("日時"), db_index=True)

    class Meta:
        verbose_name = _("住民とのメッセージ")
        verbose_name_plural = _("住民とのメッセージ")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "client_key"], condition=~models.Q(client_key=""),
                name="application_message_sent_once",
            ),
        ]

    def __str__(self):
        return f"{self.application_id}: {self.get_direction_display()}"


# --------------------------------------------------------------------------
# Correction requests (修正依頼) and the answers they replaced (procedures/correspondence.py)
# --------------------------------------------------------------------------

CORRECTION_REASON_MAX = 500
# The status an application waits in while the resident corrects it (one of DEFAULT_STATUSES).
CORRECTION_STATUS_CODE = "correction_requested"


class CorrectionRequest(models.Model):
    """Staff ask the resident to answer some steps of an application again."""

    class State(models.TextChoices):
        OPEN = "open", _("修正待ち")
        ANSWERED = "answered", _("再提出済み")
        CANCELLED = "cancelled", _("取消し")

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="corrections", verbose_name=_("申請")
    )
    keys = models.JSONField(_("修正する項目"), default=list)
    reason = models.TextField(_("理由"), max_length=CORRECTION_REASON_MAX)
    return_status = models.ForeignKey(
        "ApplicationStatus", on_delete=models.PROTECT, related_name="+", verbose_name=_("再提出後の状態")
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("依頼した職員"),
    )
    # Bound into the signed 修正する button; the resubmission must bring it back (see correspondence.py).
    token = models.CharField(max_length=40, editable=False)
    state = models.CharField(_("状況"), max_length=20, choices=State.choices, default=State.OPEN)
    notified = models.BooleanField(_("LINE で知らせた"), default=False)
    created_at = models.DateTimeField(_("依頼日時"))
    answered_at = models.DateTimeField(_("再提出日時"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("取消し日時"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("取り消した職員"),
    )

    class Meta:
        verbose_name = _("修正依頼")
        verbose_name_plural = _("修正依頼")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["application"], condition=models.Q(state="open"), name="correction_one_open_per_application"
            ),
        ]

    def __str__(self):
        return f"{self.application_id}: {self.get_state_display()}"


class ApplicationRevision(models.Model):
    """The answers before and after one resubmission: nothing a resident once sent is overwritten."""

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="revisions", verbose_name=_("申請")
    )
    correction = models.OneToOneField(
        CorrectionRequest, on_delete=models.CASCADE, related_name="revision", verbose_name=_("修正依頼")
    )
    old_answers = EncryptedJSONField(_("修正前の回答"), default=dict)
    old_computed = EncryptedJSONField(_("修正前の計算項目"), default=dict)
    new_answers = EncryptedJSONField(_("修正後の回答"), default=dict)
    new_computed = EncryptedJSONField(_("修正後の計算項目"), default=dict)
    created_at = models.DateTimeField(_("日時"))

    class Meta:
        verbose_name = _("申請の修正履歴")
        verbose_name_plural = _("申請の修正履歴")
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.application_id}: {self.created_at:%Y-%m-%d %H:%M}"


@receiver(post_save, sender=Procedure, dispatch_uid="procedures.procedure_default_statuses")
def procedure_default_statuses(sender, instance, created, raw=False, **kwargs):
    """Every new procedure starts with the default statuses and transitions."""
    if created and not raw:
        from procedures.workflow import procedure_statuses_ensure

        procedure_statuses_ensure(procedure=instance)


@receiver(pre_save, sender=Application, dispatch_uid="procedures.application_status_default")
def application_status_default(sender, instance, raw=False, **kwargs):
    """An application saved without a status starts in its procedure's initial status."""
    if not raw and instance.status_id is None and instance.procedure_id is not None:
        from procedures.workflow import procedure_initial_status

        instance.status = procedure_initial_status(procedure=instance.procedure)
