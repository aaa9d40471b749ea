"""Admin forms of broadcasts: the broadcast's settings, and one editor per composer message kind.

Staff never write JSON (except in the Flex editor, for power users): each editor turns its fields
into a composer message (broadcasts/compose.py) and shows compose's own checks as its errors.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import jpholiday
from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from broadcasts import compose
from broadcasts.models import Broadcast
from broadcasts.schedule import TOKYO

WEEKDAYS = [(0, _("月")), (1, _("火")), (2, _("水")), (3, _("木")), (4, _("金")), (5, _("土")), (6, _("日"))]
_DATE_LINE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
# 年末年始: the city hall's closing days.
YEAR_END_DAYS = ((12, 29), (12, 30), (12, 31), (1, 1), (1, 2), (1, 3))
EXCLUSION_HORIZON = timedelta(days=366)
FLEX_JSON_MAX = 60_000


# --------------------------------------------------------------------------
# The broadcast's settings
# --------------------------------------------------------------------------


def _parse_dates(text: str) -> list[date]:
    days, bad = set(), []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _DATE_LINE.match(line)
        try:
            days.add(date(*(int(part) for part in match.groups())) if match else date.fromisoformat(line))
        except ValueError:
            bad.append(line)
    if bad:
        raise ValidationError(
            _("日付として読めない行があります: %(lines)s（1行に1日、例: 2026-12-29）"),
            params={"lines": "、".join(bad[:5])},
        )
    return sorted(days)


def _days_between(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _still_a_draft(broadcast_id: int) -> bool:
    """Locked until the admin's save commits (its change view is one transaction): a submit or an
    approval that lands while the page was open is not undone by saving the page's stale settings."""
    status = Broadcast.objects.select_for_update().filter(pk=broadcast_id).values_list("status", flat=True).first()
    return status == Broadcast.Status.DRAFT


class BroadcastForm(forms.ModelForm):
    recurrence_weekdays = forms.TypedMultipleChoiceField(
        label=_("曜日（毎週のとき）"),
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    excluded_dates = forms.CharField(
        label=_("配信しない日"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 20}),
        help_text=_("1行に1日（例: 2026-12-29）。この日の繰り返し配信は送りません。"),
    )
    exclude_year_end = forms.BooleanField(label=_("年末年始（12月29日〜1月3日）を配信しない日に加える"), required=False)
    exclude_holidays = forms.BooleanField(label=_("祝日を配信しない日に加える"), required=False)
    emergency_confirmed = forms.BooleanField(
        label=_("緊急配信として、受信設定にかかわらず配信先の全員に送ることを確認しました"), required=False
    )

    class Meta:
        model = Broadcast
        fields = [
            "title",
            "department",
            "audience",
            "segment",
            "category",
            "is_emergency",
            "send_at",
            "recurrence",
            "recurrence_weekdays",
            "recurrence_until",
            "excluded_dates",
            "requires_approval",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["excluded_dates"] = "\n".join(self.instance.excluded_dates or [])
        if "requires_approval" in self.fields:
            self.fields["requires_approval"].help_text = _(
                "部署の設定で承認が必須のときは、ここに関係なく、作成者以外の職員の承認が必要です。"
            )

    def clean_excluded_dates(self) -> list[date]:
        return _parse_dates(self.cleaned_data.get("excluded_dates") or "")

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and not _still_a_draft(self.instance.pk):
            raise ValidationError(
                _("ほかの職員が配信の手続きをしたため、この画面の設定は保存できません。画面を開き直してください。")
            )
        if cleaned.get("is_emergency") and not self.instance.is_emergency and not cleaned.get("emergency_confirmed"):
            self.add_error("emergency_confirmed", _("緊急配信にするには、確認のチェックを入れてください。"))
        days = set(cleaned.get("excluded_dates") or [])
        if cleaned.get("exclude_year_end") or cleaned.get("exclude_holidays"):
            start = timezone.localtime(cleaned.get("send_at") or timezone.now(), TOKYO).date()
            last = cleaned.get("recurrence_until") or start + EXCLUSION_HORIZON
            for day in _days_between(start, min(last, start + EXCLUSION_HORIZON)):
                if cleaned.get("exclude_year_end") and (day.month, day.day) in YEAR_END_DAYS:
                    days.add(day)
                if cleaned.get("exclude_holidays") and jpholiday.is_holiday(day):
                    days.add(day)
        cleaned["excluded_dates"] = [day.isoformat() for day in sorted(days)]
        return cleaned


# --------------------------------------------------------------------------
# Message editors
# --------------------------------------------------------------------------

ACTION_TYPE_CHOICES = [("", "—"), ("uri", _("URL を開く")), ("message", _("言葉を送る（キーワード）"))]


class ActionRowsMixin:
    """`action_rows` rows of (kind, label, URL or words) fields: a button each."""

    action_rows = 0
    label_max = compose.TEMPLATE_LABEL_MAX

    def add_action_fields(self):
        for row in range(1, self.action_rows + 1):
            self.fields[f"action{row}_type"] = forms.ChoiceField(
                label=_("ボタン%(row)s") % {"row": row}, choices=ACTION_TYPE_CHOICES, required=False
            )
            self.fields[f"action{row}_label"] = forms.CharField(
                label=_("表示名"), max_length=self.label_max, required=False
            )
            self.fields[f"action{row}_value"] = forms.CharField(
                label=_("URL または送る言葉"), max_length=compose.URI_MAX, required=False
            )

    @classmethod
    def action_initial(cls, actions: list[dict]) -> dict:
        initial = {}
        for row, action in enumerate(actions or [], start=1):
            initial[f"action{row}_type"] = action.get("type", "")
            initial[f"action{row}_label"] = action.get("label", "")
            initial[f"action{row}_value"] = action.get("uri") or action.get("text") or ""
        return initial

    def actions(self) -> list[dict]:
        actions = []
        for row in range(1, self.action_rows + 1):
            kind = self.cleaned_data.get(f"action{row}_type")
            label = (self.cleaned_data.get(f"action{row}_label") or "").strip()
            value = (self.cleaned_data.get(f"action{row}_value") or "").strip()
            if not (kind or label or value):
                continue
            key = "uri" if kind == "uri" else "text"
            actions.append({"type": kind, "label": label, key: value})
        return actions

    def action_row_names(self) -> list[list[str]]:
        return [
            [f"action{row}_{part}" for part in ("type", "label", "value")] for row in range(1, self.action_rows + 1)
        ]


class ImageFieldsMixin:
    """An upload field plus the stored name (kept when the form is shown again with other errors)."""

    def add_image_fields(self, *, required: bool):
        self.image_required = required
        self.fields["upload"] = forms.FileField(label=_("画像（JPEG・PNG、10MB まで）"), required=False)
        self.fields["image"] = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_image_upload(self) -> str:
        upload = self.cleaned_data.get("upload")
        name = self.cleaned_data.get("image") or ""
        if upload is not None:
            try:
                name = compose.store_image(upload.read())
            except compose.ComposeError as error:
                self.add_error("upload", error.errors)
                return ""
            self.data = self.data.copy()
            self.data[self.add_prefix("image")] = name
        elif name and not compose.image_name_is_valid(name):
            name = ""
        if self.image_required and not name:
            self.add_error("upload", _("画像を選んでください。"))
        return name


class MessageForm(forms.Form):
    kind = ""

    @classmethod
    def initial_from(cls, message: dict) -> dict:
        return dict(message)

    def build(self) -> dict:
        raise NotImplementedError

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        self.message = self.build()
        if not self.errors:  # building stores uploads, which may refuse a file
            errors = compose.message_errors(self.message)
            if errors:
                raise ValidationError(errors)
        return cleaned


class TextMessageForm(MessageForm):
    kind = "text"
    text = forms.CharField(label=_("本文"), widget=forms.Textarea(attrs={"rows": 8, "cols": 60}), strip=False)

    def build(self):
        return {"kind": "text", "text": self.cleaned_data["text"].strip()}


class ImageMessageForm(ImageFieldsMixin, MessageForm):
    kind = "image"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_image_fields(required=True)

    def build(self):
        return {"kind": "image", "image": self.clean_image_upload()}


class ButtonsMessageForm(ActionRowsMixin, MessageForm):
    kind = "buttons"
    action_rows = compose.BUTTONS_ACTIONS_MAX
    title = forms.CharField(label=_("タイトル（任意）"), max_length=compose.BUTTONS_TITLE_MAX, required=False)
    text = forms.CharField(
        label=_("本文"),
        max_length=compose.BUTTONS_TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("タイトルがあるときは60文字、ないときは160文字まで。"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_action_fields()

    @classmethod
    def initial_from(cls, message):
        return {
            "title": message.get("title", ""),
            "text": message.get("text", ""),
            **cls.action_initial(message.get("actions")),
        }

    def build(self):
        return {
            "kind": "buttons",
            "title": self.cleaned_data.get("title", "").strip(),
            "text": self.cleaned_data["text"].strip(),
            "actions": self.actions(),
        }


class ConfirmMessageForm(ActionRowsMixin, MessageForm):
    kind = "confirm"
    action_rows = 2
    text = forms.CharField(
        label=_("質問"), max_length=compose.CONFIRM_TEXT_MAX, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_action_fields()

    @classmethod
    def initial_from(cls, message):
        return {"text": message.get("text", ""), **cls.action_initial(message.get("actions"))}

    def build(self):
        return {"kind": "confirm", "text": self.cleaned_data["text"].strip(), "actions": self.actions()}


class CardForm(ImageFieldsMixin, ActionRowsMixin, forms.Form):
    action_rows = compose.CARD_ACTIONS_MAX
    label_max = compose.FLEX_BUTTON_LABEL_MAX
    title = forms.CharField(label=_("タイトル"), max_length=compose.CARD_TITLE_MAX, required=False)
    text = forms.CharField(
        label=_("本文（任意）"),
        max_length=compose.CARD_TEXT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 50}),
    )
    remove_image = forms.BooleanField(label=_("画像を外す"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_image_fields(required=False)
        self.add_action_fields()

    @classmethod
    def initial_from(cls, card: dict) -> dict:
        return {
            "title": card.get("title", ""),
            "text": card.get("text", ""),
            "image": card.get("image", ""),
            **cls.action_initial(card.get("actions")),
        }

    def card(self) -> dict:
        image = "" if self.cleaned_data.get("remove_image") else self.clean_image_upload()
        return {
            "image": image,
            "title": (self.cleaned_data.get("title") or "").strip(),
            "text": (self.cleaned_data.get("text") or "").strip(),
            "actions": self.actions(),
        }


CardFormSet = forms.formset_factory(
    CardForm, extra=2, can_delete=True, max_num=compose.CAROUSEL_BUBBLES_MAX, absolute_max=compose.CAROUSEL_BUBBLES_MAX
)


class CardsMessageForm(MessageForm):
    kind = "cards"
    alt_text = forms.CharField(
        label=_("通知に表示する文（任意）"),
        max_length=compose.ALT_TEXT_MAX,
        required=False,
        help_text=_("空欄のときは1枚目のタイトルです。"),
    )

    def __init__(self, *args, message: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        cards = (message or {}).get("cards") or []
        self.cards = CardFormSet(
            self.data or None,
            self.files or None,
            prefix="cards",
            initial=[CardForm.initial_from(card) for card in cards],
        )

    @classmethod
    def initial_from(cls, message):
        return {"alt_text": message.get("alt_text", "")}

    def is_valid(self):
        cards_valid = self.cards.is_valid()
        return super().is_valid() and cards_valid

    def build(self):
        kept = [form for form in self.cards.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        return {
            "kind": "cards",
            "alt_text": self.cleaned_data.get("alt_text", "").strip(),
            "cards": [form.card() for form in kept],
        }

    def clean(self):
        if not self.cards.is_valid():
            return self.cleaned_data  # the card forms show their own errors
        return super().clean()


class FlexMessageForm(MessageForm):
    kind = "flex"
    alt_text = forms.CharField(label=_("通知に表示する文"), max_length=compose.ALT_TEXT_MAX)
    contents = forms.CharField(
        label=_("Flex の JSON（バブルまたはカルーセル）"),
        max_length=FLEX_JSON_MAX,
        widget=forms.Textarea(attrs={"rows": 20, "cols": 80, "spellcheck": "false", "style": "font-family: monospace"}),
        help_text=_("LINE の Flex Message Simulator で作った JSON を貼り付けられます。"),
    )

    @classmethod
    def initial_from(cls, message):
        return {
            "alt_text": message.get("alt_text", ""),
            "contents": json.dumps(message.get("contents", {}), ensure_ascii=False, indent=2),
        }

    def clean_contents(self):
        try:
            return compose.parse_flex_json(self.cleaned_data["contents"])
        except compose.ComposeError as error:
            raise ValidationError(error.errors) from None

    def build(self):
        return {
            "kind": "flex",
            "alt_text": self.cleaned_data["alt_text"].strip(),
            "contents": self.cleaned_data["contents"],
        }


EDITORS: dict[str, type[MessageForm]] = {
    form.kind: form
    for form in (
        TextMessageForm,
        ImageMessageForm,
        ButtonsMessageForm,
        ConfirmMessageForm,
        CardsMessageForm,
        FlexMessageForm,
    )
}


def message_editor(kind: str, *, message: dict | None = None, data=None, files=None) -> MessageForm:
    """The editor of a message kind, filled with `message` (editing) or empty (adding)."""
    form_class = EDITORS[kind]
    initial = form_class.initial_from(message) if message else None
    if form_class is CardsMessageForm:
        return form_class(data, files, initial=initial, message=message)
    if form_class is ImageMessageForm and message:
        initial = {"image": message.get("image", "")}
    return form_class(data, files, initial=initial)
