"""Residents in the admin, and the definitions of their profile (categories, attributes).

Residents: who they are on LINE (id, profile, follow history), what they chose (categories,
attribute values), what they applied for and every message sent to them. Everything a resident
provided is read-only for everyone, and nobody adds residents by hand. Who sees a resident is
staff.policy's: city-wide readers, and staff who may view one of the resident's applications. On
the page, the profile (attributes, categories, their history) is shown to those who may view every
resident's profile, the text of sent messages only to those who may administer residents, and the
applications only as far as the viewer may view them. The page "個別メッセージを送る" pushes a
text (residents.line_services.resident_message_send).

Categories and attributes: system administrators (policy RESIDENT_PROFILE). A key is a slug fixed
once set; an attribute's choices are edited one per line as "value:ラベル", and a choice value that
residents chose cannot be removed.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Subquery
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from messaging.models import LineFollowEvent, LineUser
from procedures.services import ProblemsError
from residents import line_selectors
from residents.line_services import RESIDENT_MESSAGE_MAX, ResidentMessageRefused, resident_message_send
from residents.models import Attribute, Category, ProfileChange, Resident, ResidentAttributeValue
from residents.receive_settings import receive_settings_procedure, receive_settings_procedure_create
from residents.segments import segment_residents
from residents.selectors import resident_profile, resident_profile_changes
from staff import policy
from staff.mixins import ScopedAdminMixin

PAGE_ROWS = 100  # rows of each history table on the resident's page
KEY_PATTERN = re.compile(r"^[a-z0-9_]+$")
CHOICE_VALUE_PATTERN = re.compile(r"^[a-z0-9_-]+$")
CHOICE_VALUE_MAX = 50
CHOICE_LABEL_MAX = 100
CHOICE_KINDS = (Attribute.Kind.SINGLE_CHOICE, Attribute.Kind.MULTIPLE_CHOICE)


# --------------------------------------------------------------------------
# Residents
# --------------------------------------------------------------------------


class FollowStateFilter(admin.SimpleListFilter):
    title = gettext_lazy("友だち")
    parameter_name = "follow"

    def lookups(self, request, model_admin):
        return [("following", _("友だち")), ("blocked", _("ブロック中"))]

    def queryset(self, request, queryset):
        if self.value() not in ("following", "blocked"):
            return queryset
        rules = {"match": "all", "rules": [{"type": "follow", "op": self.value()}]}
        return queryset.filter(pk__in=segment_residents(rules).values("pk"))


def _payload_text(payload) -> str:
    """What an outbox row says: its texts, and the alternative text (or type) of anything else."""
    parts = []
    for message in payload if isinstance(payload, list) else []:
        if not isinstance(message, dict):
            continue
        if message.get("type") == "text":
            parts.append(str(message.get("text") or ""))
        else:
            parts.append(f"[{message.get('altText') or message.get('type')}]")
    return "\n".join(parts)


class MessageForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("メッセージ"),
        max_length=RESIDENT_MESSAGE_MAX,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text=gettext_lazy(
            "この住民の LINE に届きます。氏名・住所・電話番号などの個人情報は書かないでください。"
            "詳しいことは電話や窓口でお伝えください。"
        ),
        error_messages={
            "required": gettext_lazy("メッセージを入力してください。"),
            "max_length": gettext_lazy("メッセージは%(limit_value)s文字以内にしてください（現在%(show_value)s文字）。"),
        },
    )


@admin.register(Resident)
class ResidentAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "line_user_id",
        "display_name",
        "picture_thumbnail",
        "follow_state",
        "first_followed",
        "is_simulated",
        "created_at",
    ]
    list_filter = [FollowStateFilter, "categories", "is_simulated"]
    search_fields = ["line_user_id", "display_name"]
    ordering = ["-created_at", "-pk"]
    fields = [
        "line_user_id",
        "display_name",
        "picture",
        "profile_refreshed_at",
        "is_simulated",
        "created_at",
    ]
    readonly_fields = fields
    # The page checks who may write to this resident itself (resident_message_allowed).
    scope_object_views = {"send_message": policy.VIEW}

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if policy.reads_resident_profiles(request.user):
            return filters
        # The categories a resident chose are their profile: no filter that lists or selects by them.
        return [item for item in filters if (item[0] if isinstance(item, tuple) else item) != "categories"]

    def lookup_allowed(self, lookup, value, request=None):
        if lookup.startswith("categories") and not policy.reads_resident_profiles(request.user):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_queryset(self, request):
        line_users = LineUser.objects.filter(resident=OuterRef("pk"))
        first_follow = LineFollowEvent.objects.filter(
            line_user__resident=OuterRef("pk"), kind=LineFollowEvent.Kind.FOLLOW
        ).order_by("occurred_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                has_line_user=Exists(line_users),
                is_blocking=Exists(line_users.filter(is_following=False)),
                first_followed_at=Subquery(first_follow.values("occurred_at")[:1]),
            )
        )

    def has_add_permission(self, request):
        return False  # residents come from LINE, never typed in

    def has_change_permission(self, request, obj=None):
        return False  # what a resident provided is theirs: nobody edits it

    @admin.display(description=gettext_lazy("画像"))
    def picture_thumbnail(self, obj):
        return self._picture(obj, 32)

    @admin.display(description=gettext_lazy("プロフィール画像"))
    def picture(self, obj):
        return self._picture(obj, 96) or _("なし")

    @staticmethod
    def _picture(obj, size: int) -> str:
        if not obj.picture_url:
            return ""
        return format_html(
            '<img src="{}" alt="" width="{}" height="{}" loading="lazy" referrerpolicy="no-referrer">',
            obj.picture_url,
            size,
            size,
        )

    @admin.display(description=gettext_lazy("友だち"))
    def follow_state(self, obj):
        if not obj.has_line_user:
            return "—"
        return _("ブロック中") if obj.is_blocking else _("友だち")

    @admin.display(description=gettext_lazy("初回友だち追加"), ordering="first_followed_at")
    def first_followed(self, obj):
        return obj.first_followed_at

    # -- the page --------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        resident = self.get_object(request, unquote(object_id))
        if resident is not None and self.has_view_permission(request, resident):
            extra_context = {**(extra_context or {}), **self._page_context(request, resident)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _page_context(self, request, resident: Resident) -> dict:
        user = request.user
        shows_text = policy.can(user, policy.ADMINISTER, resident)
        senders = line_selectors.resident_message_senders(resident, viewer=user)
        outbox = line_selectors.resident_outbox_messages(resident)
        message_rows = [
            {
                "message": row,
                "sender": senders.get(row.pk, ""),
                "text": _payload_text(row.payload) if shows_text else None,
            }
            for row in outbox[:PAGE_ROWS]
        ]
        applications = [
            (application, reverse("admin:procedures_application_change", args=[application.pk]))
            for application in line_selectors.resident_applications(resident=resident, viewer=user)[:PAGE_ROWS]
        ]
        context = {
            "line_users": list(line_selectors.resident_line_users(resident)),
            "follow_events": list(line_selectors.resident_follow_events(resident)[:PAGE_ROWS]),
            "first_followed_at": line_selectors.resident_first_followed_at(resident),
            "is_blocking": line_selectors.resident_is_blocking(resident),
            "applications": applications,
            "message_rows": message_rows,
            "message_total": outbox.count(),
            "shows_message_text": shows_text,
            "can_send_message": line_selectors.resident_message_allowed(user=user, resident=resident),
            "send_message_url": reverse("admin:residents_resident_send_message", args=[resident.pk]),
        }
        if policy.reads_resident_profiles(user):
            changes_url = reverse("admin:residents_profilechange_changelist")
            context.update(
                profile=resident_profile(resident),
                profile_changes=resident_profile_changes(resident, limit=20),
                profile_changes_url=f"{changes_url}?{urlencode({'resident__id__exact': resident.pk})}",
            )
        return context

    # -- 個別メッセージを送る ------------------------------------------------------

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/send_message/",
                self.admin_site.admin_view(self.send_message_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_send_message",
            )
        ]
        return own + super().get_urls()

    def send_message_view(self, request, object_id):
        resident = self.get_object(request, unquote(object_id))
        if resident is None:
            raise Http404(_("指定された住民が見つかりません。"))
        if not line_selectors.resident_message_allowed(user=request.user, resident=resident):
            raise PermissionDenied
        change_url = reverse("admin:residents_resident_change", args=[resident.pk])
        form = MessageForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                resident_message_send(
                    resident=resident, text=form.cleaned_data["text"], sender=request.user, request=request
                )
            except ResidentMessageRefused as error:
                form.add_error(None, error.message)
            else:
                messages.success(
                    request, _("メッセージを LINE で送ります。送信の状態は「送信メッセージ」で確かめられます。")
                )
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("個別メッセージを送る"),
            "subpage_object": resident,
            "resident": resident,
            "is_blocking": line_selectors.resident_is_blocking(resident),
            "change_url": change_url,
            "form": form,
        }
        return TemplateResponse(request, "admin/residents/resident/send_message.html", context)


# --------------------------------------------------------------------------
# Categories and attributes
# --------------------------------------------------------------------------


def _clean_key(key: str) -> str:
    if not KEY_PATTERN.match(key or ""):
        raise forms.ValidationError(
            _("キーは半角英小文字・数字・_（アンダースコア）で入力してください（例：child_care）。")
        )
    return key


class FixedKeyAdminMixin:
    """The key is chosen once: read-only on every later change (rules, answers and residents refer to it)."""

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "key"] if obj is not None else fields


class CategoryForm(forms.ModelForm):
    class Meta:
        model = Category
        fields = ["name", "key", "description", "position", "is_active"]

    def clean_key(self):
        return _clean_key(self.cleaned_data["key"])


@admin.register(Category)
class CategoryAdmin(FixedKeyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    form = CategoryForm
    list_display = ["name", "key", "position", "is_active", "resident_count"]
    list_filter = ["is_active"]
    search_fields = ["name", "key"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(chosen_by=Count("resident_links"))

    @admin.display(description=gettext_lazy("選んだ住民"), ordering="chosen_by")
    def resident_count(self, obj):
        return obj.chosen_by

    change_list_template = "admin/residents/category/change_list.html"

    def changelist_view(self, request, extra_context=None):
        procedure = receive_settings_procedure()
        extra = {"receive_settings_procedure": procedure, **(extra_context or {})}
        return super().changelist_view(request, extra)

    def get_urls(self):
        view = self.admin_site.admin_view(self.receive_settings_create_view)
        return [path("receive-settings/", view, name="residents_category_receive_settings")] + super().get_urls()

    def receive_settings_create_view(self, request):
        """Create the ready-made 受信設定 procedure from the categories (and the 地区 attribute)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            try:
                procedure = receive_settings_procedure_create(actor=request.user)
            except ProblemsError as error:
                for message in error.messages:
                    messages.error(request, message)
            else:
                messages.success(
                    request,
                    _("受信設定の手続き「%(name)s」を作成して公開しました。住民は「受信設定」と送ると始められます。")
                    % {"name": procedure.name},
                )
                return HttpResponseRedirect(reverse("admin:procedures_procedure_change", args=[procedure.pk]))
        return HttpResponseRedirect(reverse("admin:residents_category_changelist"))


def choices_text(choices) -> str:
    """An attribute's choices as staff edit them: one "value:ラベル" per line."""
    return "\n".join(f"{choice.get('value')}:{choice.get('label')}" for choice in choices or [])


def choices_parse(text: str) -> list[dict]:
    """Choices from lines of "value:ラベル" (a full-width colon too); problems raise one ValidationError."""
    choices, problems, seen = [], [], set()
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        value, colon, label = line.replace("：", ":").partition(":")
        value, label = value.strip(), label.strip()
        if not colon or not value or not label:
            problems.append(
                _("%(line)s行目：「値:ラベル」の形で書いてください（例：north:北地区）。") % {"line": number}
            )
        elif not CHOICE_VALUE_PATTERN.match(value) or len(value) > CHOICE_VALUE_MAX:
            problems.append(
                _("%(line)s行目：値「%(value)s」は半角英小文字・数字・_・-で%(max)s文字以内にしてください。")
                % {"line": number, "value": value, "max": CHOICE_VALUE_MAX}
            )
        elif len(label) > CHOICE_LABEL_MAX:
            problems.append(
                _("%(line)s行目：ラベルは%(max)s文字以内にしてください。") % {"line": number, "max": CHOICE_LABEL_MAX}
            )
        elif value in seen:
            problems.append(_("%(line)s行目：値「%(value)s」が重複しています。") % {"line": number, "value": value})
        else:
            seen.add(value)
            choices.append({"value": value, "label": label})
    if problems:
        raise forms.ValidationError(problems)
    return choices


class AttributeForm(forms.ModelForm):
    choices_text = forms.CharField(
        label=gettext_lazy("選択肢"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 50, "placeholder": "north:北地区\nsouth:南地区"}),
        help_text=gettext_lazy(
            "「単一選択」「複数選択」のとき、1行に1つ「値:ラベル」の形で書きます（例：north:北地区）。"
            "値は半角英小文字・数字・_・-。住民が選んでいる値は削除・変更できません（ラベルは変更できます）。"
        ),
    )

    class Meta:
        model = Attribute
        fields = ["label", "key", "kind", "position"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial.setdefault("choices_text", choices_text(self.instance.choices))

    def clean_key(self):
        return _clean_key(self.cleaned_data["key"])

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind", self.instance.kind)
        try:
            choices = choices_parse(cleaned.get("choices_text", ""))
        except forms.ValidationError as error:
            self.add_error("choices_text", error)
            return cleaned
        if kind in CHOICE_KINDS and not choices:
            self.add_error("choices_text", _("選択肢を1つ以上書いてください。"))
        elif kind and kind not in CHOICE_KINDS and choices:
            self.add_error("choices_text", _("選択肢は「単一選択」「複数選択」のときだけ書けます。空にしてください。"))
        elif self.instance.pk is not None:
            self._check_removed_choices(choices)
        cleaned["choices"] = choices
        return cleaned

    def _check_removed_choices(self, choices: list[dict]) -> None:
        kept = {choice["value"] for choice in choices}
        labels = {choice.get("value"): choice.get("label") for choice in self.instance.choices or []}
        removed = [value for value in labels if value not in kept]
        in_use = (
            ResidentAttributeValue.objects.filter(attribute=self.instance, value_text__in=removed)
            .values("value_text")
            .annotate(residents=Count("resident", distinct=True))
            .order_by("value_text")
        )
        for row in in_use:
            self.add_error(
                "choices_text",
                _(
                    "選択肢「%(value)s:%(label)s」は住民%(count)s人が選んでいるため、削除・変更できません（ラベルは変更できます）。"
                )
                % {"value": row["value_text"], "label": labels[row["value_text"]], "count": row["residents"]},
            )

    def save(self, commit=True):
        self.instance.choices = self.cleaned_data["choices"]
        return super().save(commit)


@admin.register(Attribute)
class AttributeAdmin(FixedKeyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    form = AttributeForm
    list_display = ["label", "key", "kind", "choices_summary", "position", "value_count"]
    list_filter = ["kind"]
    search_fields = ["label", "key"]
    fields = ["label", "key", "kind", "choices_text", "position", "change_history"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(residents_with_value=Count("values__resident", distinct=True))

    def get_readonly_fields(self, request, obj=None):
        fields = [*super().get_readonly_fields(request, obj), "change_history"]
        if obj is not None and obj.values.exists():
            fields.append("kind")  # the residents' values are stored for this kind
        return fields

    @admin.display(description=gettext_lazy("選択肢"))
    def choices_summary(self, obj):
        return "、".join(str(choice.get("label")) for choice in obj.choices or []) or "—"

    @admin.display(description=gettext_lazy("値のある住民"), ordering="residents_with_value")
    def value_count(self, obj):
        return obj.residents_with_value

    @admin.display(description=gettext_lazy("変更履歴"))
    def change_history(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        url = reverse("admin:residents_profilechange_changelist")
        count = obj.changes.count()
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"attribute__id__exact": obj.pk}),
            _("%(count)s件") % {"count": count},
        )


@admin.register(ProfileChange)
class ProfileChangeAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """History of residents' attributes and categories: written by the services, never edited."""

    list_display = ["changed_at", "resident", "attribute", "previous", "value", "source", "source_detail"]
    list_filter = ["source", "attribute"]
    search_fields = ["resident__line_user_id", "source_detail"]
    list_select_related = ["resident", "attribute"]
    date_hierarchy = "changed_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


import residents.segment_admin  # noqa: E402, F401 - registers the segment admin
