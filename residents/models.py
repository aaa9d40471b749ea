from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Resident(models.Model):
    """A person who talks to the city's LINE Official Account (or a simulated one)."""

    line_user_id = models.CharField(_("LINE ユーザーID"), max_length=64, unique=True)
    display_name = models.CharField(_("表示名"), max_length=200, blank=True)
    is_simulated = models.BooleanField(_("シミュレーター"), default=False)
    picture_url = models.URLField(_("プロフィール画像"), max_length=500, blank=True)
    profile_refreshed_at = models.DateTimeField(_("プロフィール取得日時"), null=True, blank=True)
    categories = models.ManyToManyField(
        "Category", through="ResidentCategory", blank=True, related_name="residents", verbose_name=_("受信カテゴリ")
    )
    # None: the resident never chose (receives every category); set: receives only `categories`.
    receive_settings_at = models.DateTimeField(_("受信設定日時"), null=True, blank=True)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("住民")
        verbose_name_plural = _("住民")

    def __str__(self):
        return self.display_name or self.line_user_id


class Category(models.Model):
    """A topic residents choose to receive (受信設定): 防災, 子育て, イベント, ごみ, ..."""

    key = models.SlugField(
        _("キー"), max_length=40, unique=True, help_text=_("半角英小文字・数字・_。作成後は変えないでください。")
    )
    name = models.CharField(_("名前"), max_length=50)
    description = models.CharField(_("説明"), max_length=200, blank=True)
    position = models.PositiveIntegerField(_("順番"), default=0)
    is_active = models.BooleanField(_("受付中"), default=True, help_text=_("外すと受信設定の選択肢に出ません。"))

    class Meta:
        verbose_name = _("配信カテゴリ")
        verbose_name_plural = _("配信カテゴリ")
        ordering = ["position", "id"]

    def __str__(self):
        return self.name


class Attribute(models.Model):
    """A fact about residents that staff define (地区, 子どもの有無, 生年月日, ...)."""

    class Kind(models.TextChoices):
        SINGLE_CHOICE = "single_choice", _("単一選択")
        MULTIPLE_CHOICE = "multiple_choice", _("複数選択")
        NUMBER = "number", _("数値")
        DATE = "date", _("日付")
        TEXT = "text", _("テキスト")

    key = models.SlugField(
        _("キー"), max_length=40, unique=True, help_text=_("半角英小文字・数字・_。作成後は変えないでください。")
    )
    label = models.CharField(_("名前"), max_length=100)
    kind = models.CharField(_("種類"), max_length=20, choices=Kind.choices)
    # [{"value": "north", "label": "北地区"}, ...] for the choice kinds; values never change once used.
    choices = models.JSONField(_("選択肢"), default=list, blank=True)
    position = models.PositiveIntegerField(_("順番"), default=0)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("住民の属性")
        verbose_name_plural = _("住民の属性")
        ordering = ["position", "id"]

    def __str__(self):
        return self.label


class ResidentAttributeValue(models.Model):
    """One value of an attribute for a resident; a multiple-choice attribute has one row per chosen option.

    Values are stored in typed columns so that segments compare them in the database.
    """

    resident = models.ForeignKey(
        Resident, on_delete=models.CASCADE, related_name="attribute_values", verbose_name=_("住民")
    )
    attribute = models.ForeignKey(Attribute, on_delete=models.PROTECT, related_name="values", verbose_name=_("属性"))
    value_text = models.CharField(_("値（文字）"), max_length=200, blank=True)
    value_number = models.DecimalField(_("値（数値）"), max_digits=15, decimal_places=4, null=True, blank=True)
    value_date = models.DateField(_("値（日付）"), null=True, blank=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("住民の属性値")
        verbose_name_plural = _("住民の属性値")
        ordering = ["attribute__position", "attribute_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["resident", "attribute", "value_text"], name="resident_attribute_value_unique"
            )
        ]
        indexes = [
            models.Index(fields=["attribute", "value_text"], name="attribute_value_text"),
            models.Index(fields=["attribute", "value_number"], name="attribute_value_number"),
            models.Index(fields=["attribute", "value_date"], name="attribute_value_date"),
        ]

    def __str__(self):
        return f"{self.attribute}: {self.value}"

    @property
    def value(self):
        kind = self.attribute.kind
        if kind == Attribute.Kind.NUMBER:
            return self.value_number
        if kind == Attribute.Kind.DATE:
            return self.value_date
        return self.value_text


class ResidentCategory(models.Model):
    """A category a resident chose to receive."""

    resident = models.ForeignKey(
        Resident, on_delete=models.CASCADE, related_name="category_links", verbose_name=_("住民")
    )
    category = models.ForeignKey(
        Category, on_delete=models.CASCADE, related_name="resident_links", verbose_name=_("カテゴリ")
    )
    created_at = models.DateTimeField(_("選択日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("住民の受信カテゴリ")
        verbose_name_plural = _("住民の受信カテゴリ")
        constraints = [models.UniqueConstraint(fields=["resident", "category"], name="resident_category_unique")]

    def __str__(self):
        return str(self.category)


class ProfileChange(models.Model):
    """History of a resident's attributes and categories: what changed, when, and from where."""

    class Source(models.TextChoices):
        PROCEDURE = "procedure", _("手続きの回答")
        STAFF = "staff", _("職員")
        CAMPAIGN = "campaign", _("キャンペーン")
        SYSTEM = "system", _("システム")

    resident = models.ForeignKey(
        Resident, on_delete=models.CASCADE, related_name="profile_changes", verbose_name=_("住民")
    )
    attribute = models.ForeignKey(
        Attribute,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="changes",
        verbose_name=_("属性"),
        help_text=_("空欄は受信カテゴリの変更です。"),
    )
    previous = models.JSONField(_("変更前"), null=True, blank=True)
    value = models.JSONField(_("変更後"), null=True, blank=True)
    source = models.CharField(_("変更元"), max_length=20, choices=Source.choices)
    # e.g. the application's receipt number or the staff member's username; never personal answers.
    source_detail = models.CharField(_("変更元の詳細"), max_length=200, blank=True)
    changed_at = models.DateTimeField(_("変更日時"))

    class Meta:
        verbose_name = _("属性・受信設定の変更履歴")
        verbose_name_plural = _("属性・受信設定の変更履歴")
        ordering = ["-changed_at", "-id"]

    def __str__(self):
        subject = self.attribute or _("受信カテゴリ")
        return f"{subject} {self.changed_at:%Y-%m-%d %H:%M}"


class Segment(models.Model):
    """A saved, reusable group of residents defined by rules (see residents/segments.py for the rule tree)."""

    name = models.CharField(_("名前"), max_length=100)
    description = models.CharField(_("説明"), max_length=300, blank=True)
    department = models.ForeignKey(
        "staff.Department",
        verbose_name=_("担当部署"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="segments",
        help_text=_("空欄は全庁で使えるセグメントです。"),
    )
    rules = models.JSONField(_("条件"), default=dict, blank=True)
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
        verbose_name = _("セグメント")
        verbose_name_plural = _("セグメント")
        ordering = ["name", "id"]

    def __str__(self):
        return self.name
