"""Rich menus as staff build them, their deployments to LINE, tap counts and disaster-mode switches.

A menu's tiles (areas) hold actions by reference (a procedure, another menu) so renaming a
keyword or redeploying a tab never breaks a tile. LINE ids are recorded per deployment; a menu
has at most one live LINE rich menu at a time (`line_rich_menu_id`).
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

ALIAS_PATTERN = r"^[a-z0-9_-]{1,32}$"  # LINE: richMenuAliasId


class RichMenu(models.Model):
    class Role(models.TextChoices):
        DEFAULT = "default", _("標準（全員）")
        SEGMENT = "segment", _("セグメント向け")
        TAB = "tab", _("タブ（他のメニューから切り替え）")
        DISASTER = "disaster", _("災害時")

    name = models.CharField(
        _("名前"), max_length=100, help_text=_("LINE 上には表示されません（300文字まで、管理用）。")
    )
    role = models.CharField(_("用途"), max_length=10, choices=Role.choices, default=Role.DEFAULT)
    segment = models.ForeignKey(
        "residents.Segment",
        verbose_name=_("セグメント"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rich_menus",
        help_text=_("用途が「セグメント向け」のとき、このセグメントの住民に表示します。"),
    )
    priority = models.PositiveIntegerField(
        _("優先順位"), default=100, help_text=_("住民が複数のセグメントに入るとき、数字の小さいメニューを表示します。")
    )
    width = models.PositiveIntegerField(_("幅"), default=2500)
    height = models.PositiveIntegerField(_("高さ"), default=1686)
    chat_bar_text = models.CharField(_("メニューバーのテキスト"), max_length=14, default="メニュー")
    opens_by_default = models.BooleanField(_("最初から開いて表示"), default=True)
    layout = models.CharField(_("レイアウト"), max_length=30, blank=True, help_text=_("空欄は自由配置です。"))
    alias_id = models.CharField(
        _("エイリアスID"),
        max_length=32,
        blank=True,
        validators=[RegexValidator(ALIAS_PATTERN, _("半角英小文字・数字・_・- で32文字まで。"))],
        help_text=_("タブの切り替え先にするメニューに付けます（半角英小文字・数字・_・-）。"),
    )
    image = models.FileField(_("画像"), upload_to="richmenus/", blank=True)
    image_content_type = models.CharField(max_length=20, blank=True, editable=False)
    image_generated = models.BooleanField(_("タイルから作成した画像"), default=False, editable=False)
    line_rich_menu_id = models.CharField(_("LINE のリッチメニューID"), max_length=100, blank=True, editable=False)
    deployed_at = models.DateTimeField(_("反映日時"), null=True, blank=True, editable=False)
    changed_since_deploy = models.BooleanField(_("反映後に変更あり"), default=True, editable=False)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("リッチメニュー")
        verbose_name_plural = _("リッチメニュー")
        ordering = ["role", "priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alias_id"], condition=~models.Q(alias_id=""), name="rich_menu_alias_unique"
            ),
            models.UniqueConstraint(fields=["role"], condition=models.Q(role="default"), name="rich_menu_one_default"),
        ]

    def __str__(self):
        return self.name


class RichMenuArea(models.Model):
    class ActionType(models.TextChoices):
        PROCEDURE = "procedure", _("手続きを始める")
        URI = "uri", _("ウェブページを開く")
        MESSAGE = "message", _("キーワードを送る")
        POSTBACK = "postback", _("ポストバック")
        DATETIME_PICKER = "datetime_picker", _("日付を選ぶ")
        SWITCH = "switch", _("別のメニュー（タブ）に切り替える")

    menu = models.ForeignKey(RichMenu, on_delete=models.CASCADE, related_name="areas", verbose_name=_("リッチメニュー"))
    position = models.PositiveIntegerField(_("順番"), default=0)
    label = models.CharField(
        _("ラベル"), max_length=20, help_text=_("タイルに描く文字、読み上げ用のラベルにも使います（20文字まで）。")
    )
    x = models.PositiveIntegerField(_("X"), default=0)
    y = models.PositiveIntegerField(_("Y"), default=0)
    width = models.PositiveIntegerField(_("幅"), default=0)
    height = models.PositiveIntegerField(_("高さ"), default=0)
    background = models.CharField(_("背景色"), max_length=7, default="#FFFFFF")
    foreground = models.CharField(_("文字色"), max_length=7, default="#333333")
    icon = models.FileField(_("アイコン"), upload_to="richmenus/icons/", blank=True)
    action_type = models.CharField(_("タップしたとき"), max_length=20, choices=ActionType.choices)
    procedure = models.ForeignKey(
        "procedures.Procedure",
        verbose_name=_("手続き"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    uri = models.URLField(_("URL"), max_length=1000, blank=True)
    text = models.CharField(_("キーワード・データ"), max_length=300, blank=True)
    datetime_mode = models.CharField(
        _("日付の種類"),
        max_length=10,
        blank=True,
        choices=[("date", _("日付")), ("time", _("時刻")), ("datetime", _("日時"))],
    )
    switch_to = models.ForeignKey(
        RichMenu, verbose_name=_("切り替え先"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = _("タップ領域")
        verbose_name_plural = _("タップ領域")
        ordering = ["menu", "position", "id"]

    def __str__(self):
        return self.label


class RichMenuDeployment(models.Model):
    """One attempt to put a menu on LINE: what was created, what it replaced, and LINE's answer."""

    class Status(models.TextChoices):
        RUNNING = "running", _("反映中")
        SUCCEEDED = "succeeded", _("反映済み")
        FAILED = "failed", _("失敗")

    menu = models.ForeignKey(
        RichMenu, on_delete=models.CASCADE, related_name="deployments", verbose_name=_("リッチメニュー")
    )
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.RUNNING)
    line_rich_menu_id = models.CharField(_("作成した LINE のID"), max_length=100, blank=True)
    replaced_line_rich_menu_id = models.CharField(_("置き換えた LINE のID"), max_length=100, blank=True)
    error = models.TextField(_("エラー"), blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("実行者"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(_("開始日時"))
    finished_at = models.DateTimeField(_("終了日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("リッチメニューの反映履歴")
        verbose_name_plural = _("リッチメニューの反映履歴")
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.menu} {self.started_at:%Y-%m-%d %H:%M}"


class RichMenuTapCount(models.Model):
    """Taps on one tile on one day (Asia/Tokyo), counted from postbacks and the URL redirect."""

    area = models.ForeignKey(
        RichMenuArea, on_delete=models.CASCADE, related_name="tap_counts", verbose_name=_("タップ領域")
    )
    day = models.DateField(_("日付"))
    count = models.PositiveIntegerField(_("タップ数"), default=0)

    class Meta:
        verbose_name = _("タップ数")
        verbose_name_plural = _("タップ数")
        ordering = ["-day", "area"]
        constraints = [models.UniqueConstraint(fields=["area", "day"], name="rich_menu_tap_count_unique")]

    def __str__(self):
        return f"{self.area} {self.day}: {self.count}"


class DisasterModeSwitch(models.Model):
    """Switching every resident to the disaster menu, or back; progress is shown while it runs."""

    class Direction(models.TextChoices):
        ON = "on", _("災害時メニューに切り替え")
        OFF = "off", _("通常のメニューに戻す")

    class Status(models.TextChoices):
        RUNNING = "running", _("切り替え中")
        DONE = "done", _("完了")
        FAILED = "failed", _("失敗")

    direction = models.CharField(_("切り替え"), max_length=3, choices=Direction.choices)
    menu = models.ForeignKey(RichMenu, verbose_name=_("災害時メニュー"), on_delete=models.PROTECT, related_name="+")
    status = models.CharField(_("状態"), max_length=10, choices=Status.choices, default=Status.RUNNING)
    residents_total = models.PositiveIntegerField(_("対象の住民"), default=0)
    residents_done = models.PositiveIntegerField(_("切り替え済み"), default=0)
    error = models.TextField(_("エラー"), blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("実行者"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(_("開始日時"))
    finished_at = models.DateTimeField(_("終了日時"), null=True, blank=True)

    class Meta:
        verbose_name = _("災害モードの切り替え")
        verbose_name_plural = _("災害モードの切り替え")
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.get_direction_display()} {self.started_at:%Y-%m-%d %H:%M}"


class RichMenuLink(models.Model):
    """Which menu LINE was last told to show one resident (none: the default menu).

    The reconciler and disaster mode compare this with what each resident should see, so only
    the differences are sent to LINE (bulk link/unlink, at most 500 users a call).
    """

    line_user = models.OneToOneField(
        "messaging.LineUser", on_delete=models.CASCADE, related_name="rich_menu_link", verbose_name=_("LINE ユーザー")
    )
    menu = models.ForeignKey(RichMenu, on_delete=models.CASCADE, related_name="links", verbose_name=_("リッチメニュー"))
    line_rich_menu_id = models.CharField(_("LINE のリッチメニューID"), max_length=100)
    linked_at = models.DateTimeField(_("設定日時"))

    class Meta:
        verbose_name = _("住民ごとのリッチメニュー")
        verbose_name_plural = _("住民ごとのリッチメニュー")

    def __str__(self):
        return f"{self.line_user} → {self.menu}"
