"""The segment admin: a rule builder (no JSON typing), a live count and a sample of members.

The editor (residents/static/residents/segment_editor.js) edits the hidden `rules` field; what it
offers (attributes and their choices, categories, the procedures the user may view and their
statuses, operator labels) comes from a JSON blob in the page. While editing, it POSTs the rules
to `count/`, which checks them (rules_problems) and answers the count and a sample.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.forms.fields import InvalidJSONInput
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from residents.models import Attribute, Category, Segment
from residents.segments import (
    ATTRIBUTE_OPS,
    CATEGORY_OPS,
    FOLLOW_OPS,
    MAX_DEPTH,
    rules_problems,
    rules_read_profiles,
    segment_residents,
)
from residents.services import segment_delete, segment_save
from staff import policy
from staff.mixins import ScopedAdminMixin

SAMPLE_SIZE = 20
# A rule tree is small (at most MAX_LEAVES leaves); anything much bigger is not one.
COUNT_BODY_MAX_BYTES = 100_000

OP_LABELS = {
    "equals": gettext_lazy("が次と一致"),
    "in": gettext_lazy("が次のいずれか"),
    "contains": gettext_lazy("が次を含む"),
    "set": gettext_lazy("が登録済み"),
    "not_set": gettext_lazy("が未登録"),
    "eq": gettext_lazy("＝"),
    "lt": gettext_lazy("＜（より小さい・前）"),
    "lte": gettext_lazy("≦（以下・以前）"),
    "gt": gettext_lazy("＞（より大きい・後）"),
    "gte": gettext_lazy("≧（以上・以後）"),
    "between": gettext_lazy("の範囲（両端を含む）"),
    "receives": gettext_lazy("を受信する（受信設定をしていない人を含む）"),
    "chose": gettext_lazy("を受信設定で選んだ"),
    "never_chose": gettext_lazy("受信設定をしたことがない"),
    "following": gettext_lazy("現在、友だち"),
    "blocked": gettext_lazy("ブロックしている"),
    "first_followed_before": gettext_lazy("初めて友だち追加した日が次より前"),
    "first_followed_since": gettext_lazy("初めて友だち追加した日が次以降"),
    "first_followed_between": gettext_lazy("初めて友だち追加した日が次の期間"),
}


def _labels() -> dict:
    return {
        "all": _("すべての条件を満たす（AND）"),
        "any": _("いずれかの条件を満たす（OR）"),
        "negate": _("否定（NOT）"),
        "add_rule": _("＋ 条件"),
        "add_group": _("＋ グループ"),
        "remove": _("削除"),
        "types": {
            "attribute": _("属性"),
            "category": _("受信設定"),
            "follow": _("友だち"),
            "application": _("申請履歴"),
        },
        "choose": _("選んでください"),
        "any_status": _("状態を問わない"),
        "submitted_from": _("申請日（から）"),
        "submitted_to": _("申請日（まで）"),
        "has_application": _("の申請がある"),
        "and": _("〜"),
        "count": _("該当する住民: %(count)s 人"),
        "count_hidden": _(
            "属性・受信カテゴリの条件があるため、人数は表示しません（住民の登録内容はシステム管理者だけが見られます）。"
        ),
        "counting": _("数えています…"),
        "problems": _("条件を直してください:"),
        "failed": _("件数を取得できませんでした。画面を再読み込みしてください。"),
        "sample": _("該当する住民の例（最大%(size)s人）") % {"size": SAMPLE_SIZE},
        "no_members": _("該当する住民はいません。"),
        "no_display_name": _("（表示名なし）"),
    }


def editor_data(user, rules) -> dict:
    """What the rule editor offers this user (the page embeds it with json_script)."""
    procedures = policy.procedures_visible_to(user).prefetch_related("statuses").order_by("name", "pk")
    return {
        "rules": rules,
        "max_depth": MAX_DEPTH,
        "attributes": [
            {"key": attribute.key, "label": attribute.label, "kind": attribute.kind, "choices": attribute.choices}
            for attribute in Attribute.objects.order_by("position", "pk")
        ],
        "attribute_ops": {kind: list(ops) for kind, ops in ATTRIBUTE_OPS.items()},
        "category_ops": list(CATEGORY_OPS),
        "follow_ops": list(FOLLOW_OPS),
        "op_labels": {op: str(label) for op, label in OP_LABELS.items()},
        "categories": [
            {"key": category.key, "name": category.name if category.is_active else f"{category.name}（{_('停止中')}）"}
            for category in Category.objects.order_by("position", "pk")
        ],
        "procedures": [
            {
                "id": procedure.pk,
                "name": procedure.name,
                "statuses": [{"code": status.code, "label": status.label} for status in procedure.statuses.all()],
            }
            for procedure in procedures
        ],
        "labels": _labels(),
    }


def members_preview(user, rules) -> dict:
    """How many residents the rules select and, for those who may read residents' profiles (system
    administrators), a sample of them (LINE user id and display name only).

    Department staff build segments but may not read profiles (attributes, categories). A sample
    would tell them whose profile matches, and so would a count of rules on a profile: narrowed to
    the few who applied to their procedure on one day, or taken apart by difference (any/not). They
    get the count of rules without profile conditions only.
    """
    members = segment_residents(rules)
    if not policy.reads_resident_profiles(user):
        if rules_read_profiles(rules):
            return {"count": None, "count_hidden": True, "sample": None}
        return {"count": members.count(), "sample": None}
    count = members.count()
    sample = list(members.order_by("pk").values("pk", "line_user_id", "display_name")[:SAMPLE_SIZE])
    return {
        "count": count,
        "sample": [
            {
                "line_user_id": row["line_user_id"],
                "display_name": row["display_name"],
                "url": reverse("admin:residents_resident_change", args=[row["pk"]]),
            }
            for row in sample
        ],
    }


class RulesField(forms.JSONField):
    """A JSON field that refuses absurdly deep JSON (never made by the editor) instead of crashing."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)


class SegmentForm(forms.ModelForm):
    rules = RulesField(label=gettext_lazy("条件"), widget=forms.HiddenInput, required=False)

    class Meta:
        model = Segment
        fields = ["name", "description", "department", "rules"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_rules(self):
        rules = self.cleaned_data.get("rules")
        problems = rules_problems(rules, procedures=policy.procedures_visible_to(self.user))
        if problems:
            raise forms.ValidationError(problems)
        return rules


@admin.register(Segment)
class SegmentAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = SegmentForm
    change_form_template = "admin/residents/segment/change_form.html"
    list_display = ["name", "department", "description", "created_by", "updated_at"]
    list_filter = ["department"]
    search_fields = ["name", "description"]
    fields = ["name", "description", "department", "rules"]

    class Media:
        css = {"all": ["residents/segment_editor.css"]}
        js = ["residents/segment_editor.js"]

    def get_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only: the editor shows the rules (disabled) instead of their JSON.
            return [name for name in self.fields if name != "rules"]
        return self.fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("department", "created_by")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        class UserSegmentForm(form):
            def __init__(self, *args, **form_kwargs):
                super().__init__(*args, user=request.user, **form_kwargs)

        return UserSegmentForm

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if "department" not in initial and not policy.access(request.user, policy.BUILD).everywhere:
            departments = list(policy.departments_for(request.user, policy.BUILD).values_list("pk", flat=True)[:2])
            if len(departments) == 1:
                initial["department"] = departments[0]
        initial.setdefault("rules", {"match": "all", "rules": []})
        return initial

    def save_model(self, request, obj, form, change):
        segment_save(segment=obj, actor=request.user, changed_fields=form.changed_data, request=request)

    def delete_model(self, request, obj):
        segment_delete(segment=obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for segment in queryset:
                segment_delete(segment=segment, actor=request.user, request=request)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra = dict(extra_context or {})
        segment = self.get_object(request, object_id) if object_id else None
        saved_rules = segment.rules if segment is not None else {"match": "all", "rules": []}
        extra["segment_editor_data"] = editor_data(request.user, saved_rules) | {
            "count_url": reverse("admin:residents_segment_count"),
            "readonly": not (
                self.has_change_permission(request, segment) if segment else self.has_add_permission(request)
            ),
        }
        if segment is not None:
            problems = rules_problems(segment.rules, procedures=policy.procedures_visible_to(request.user))
            extra["saved_problems"] = problems
            extra["saved_preview"] = None if problems else members_preview(request.user, segment.rules)
        return super().changeform_view(request, object_id, form_url, extra)

    # -- the live count ----------------------------------------------------------

    def get_urls(self):
        return [
            path("count/", self.admin_site.admin_view(self.count_view), name="residents_segment_count"),
            *super().get_urls(),
        ]

    def count_view(self, request):
        return require_POST(self._count)(request)

    def _count(self, request):
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        if len(request.body) > COUNT_BODY_MAX_BYTES:
            return JsonResponse({"problems": [_("条件が大きすぎます。")]}, status=400)
        try:
            rules = json.loads(request.body or b"null")["rules"]
        except (ValueError, TypeError, KeyError, RecursionError):
            return JsonResponse(
                {"problems": [_("条件を読み取れませんでした。画面を再読み込みしてください。")]}, status=400
            )
        problems = rules_problems(rules, procedures=policy.procedures_visible_to(request.user))
        if problems:
            return JsonResponse({"problems": problems}, status=400)
        return JsonResponse(members_preview(request.user, rules))
