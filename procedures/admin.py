"""The procedure builder in the Django admin (Japanese UI).

Staff create procedures, edit the draft version step by step (kinds, order,
conditions via the condition builder, computed values), see the flow picture
and the publish problems, publish, restore earlier versions, share templates,
and read applications with sensitive answers masked. Each action calls one
service in procedures/services.py; pages and actions take ids.
"""

from __future__ import annotations

import functools
import io
import json
import unicodedata
import zipfile
from datetime import date, datetime, time, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.filters import DateFieldListFilter
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, Subquery
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from polymorphic.admin import (
    PolymorphicChildModelAdmin,
    PolymorphicChildModelFilter,
    PolymorphicModelChoiceForm,
    PolymorphicParentModelAdmin,
)

from audit import actions as audit_actions
from audit.services import audit_record
from procedures import correspondence_admin
from procedures.admin_forms import (
    MAX_RULES,
    ComputedValueForm,
    DateStepForm,
    ProcedureForm,
    StepForm,
    TemplateImportForm,
    computed_value_form_for,
    condition_to_rules,
    rule_field,
)
from procedures.attachments import attachment_url
from procedures.flow import KIND_SYMBOLS, condition_text, flow_build, flow_svg, kind_label, truncate
from procedures.models import (
    STEP_MODELS,
    WITHDRAWN_CODE,
    Application,
    ApplicationStatus,
    ApplicationStatusChange,
    ComputedValue,
    Procedure,
    ProcedureVersion,
    StaffField,
    StatusTransition,
    Step,
    StepChoice,
)
from procedures.selectors import (
    application_list,
    resident_other_applications,
    staff_who_may_process,
    version_spec_data,
)
from procedures.services import (
    InboxRefused,
    ProblemsError,
    application_assign,
    application_needs_action_clear,
    application_staff_values_update,
    application_status_change_by_staff,
    applications_assign_bulk,
    applications_needs_action_clear_bulk,
    applications_status_change_bulk,
    draft_get_or_create,
    procedure_close,
    procedure_export_data,
    procedure_import,
    procedure_reopen,
    step_move,
    version_problems,
    version_publish,
    version_restore,
)
from procedures.spec import CHOICE_KINDS, FLOW_KINDS, KEY_PATTERN, PROFILE_TARGET_KINDS, SpecError, parse_spec
from procedures.texts import answer_text
from procedures.timeline import application_timeline
from procedures.workflow import WorkflowError, next_statuses
from staff import policy
from staff.mixins import ScopedAdminMixin

MASK = "●●●●"
REVEAL_ALL = "__all__"


class BuilderMedia:
    css = {"all": ["procedures/admin/builder.css"]}


def _version_url(version_id: int) -> str:
    return reverse("admin:procedures_procedureversion_change", args=[version_id])


def _simulator_url(procedure_id: int, version_id: int | None = None) -> str:
    url = reverse("procedures:simulator") + f"?procedure={procedure_id}"
    return url + f"&version={version_id}" if version_id else url


def _proxy_entry_url(procedure: Procedure, user) -> str:
    """代理入力 of this procedure, for whoever may process its applications while it is open ("" otherwise)."""
    if not (procedure.is_open and procedure.current_version_id and policy.can(user, policy.PROCESS, procedure)):
        return ""
    return reverse("procedures:proxy_entry") + f"?procedure={procedure.pk}"


def _flow_url(version_id: int) -> str:
    return reverse("admin:procedures_procedureversion_flow", args=[version_id])


def _version_state(version: ProcedureVersion, procedure: Procedure) -> str:
    if version.is_draft:
        return _("下書き")
    if procedure.current_version_id == version.pk:
        return _("公開中") if procedure.is_open else _("公開中（受付停止）")
    return _("公開済み（過去の版）")


# --------------------------------------------------------------------------
# Status workflow (procedures/workflow.py): statuses and transitions per procedure, the status of
# an application (list column and filter, detail panel with the allowed changes, history)
# --------------------------------------------------------------------------

STATUS_NOTE_MAX = 1000


class _ProcedurePartInline:
    """An inline of a procedure's own settings: allowed where the procedure may be viewed / built.

    `obj` is the procedure being edited; without it (Django asks so for the inline's queryset)
    the question is whether the user may do so on some procedure. Shown on existing procedures
    only (ProcedureAdmin.get_inlines): a new procedure gets the default statuses when it is saved.
    """

    def _allows(self, request, action: str, obj) -> bool:
        return policy.can(request.user, action, obj if obj is not None else Procedure)

    def has_view_permission(self, request, obj=None):
        return self._allows(request, policy.VIEW, obj)

    def has_add_permission(self, request, obj=None):
        return self._allows(request, policy.BUILD, obj)

    def has_change_permission(self, request, obj=None):
        return self._allows(request, policy.BUILD, obj)

    def has_delete_permission(self, request, obj=None):
        return self._allows(request, policy.BUILD, obj)


class ApplicationStatusForm(forms.ModelForm):
    notify_link = forms.URLField(
        label=gettext_lazy("お知らせのリンク"),
        required=False,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 24}),
        help_text=gettext_lazy("{リンク} に入る URL（案内ページなど）。"),
    )

    class Meta:
        model = ApplicationStatus
        fields = ["code", "label", "order", "is_initial", "is_final", "allows_withdrawal", "notify_template",
                  "notify_link"]
        widgets = {
            "code": forms.TextInput(attrs={"size": 16}),
            "label": forms.TextInput(attrs={"size": 10}),
            "order": forms.NumberInput(attrs={"style": "width: 4em"}),
            "notify_template": forms.Textarea(attrs={"rows": 3, "cols": 36}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "code" in self.fields:
            self.fields["code"].disabled = True  # a stable key: withdrawal and the history rely on it


class _OptionalSectionFormSet(forms.BaseInlineFormSet):
    """An inline that a POST may leave out entirely (no management form): then nothing in it changes.

    The procedure's page always sends it; a POST of only the procedure's own fields (a script,
    another page) saves those fields instead of failing on a section it never showed.
    """

    def __init__(self, data=None, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.section_absent = data is not None and f"{self.prefix}-TOTAL_FORMS" not in data
        if self.section_absent:
            self.is_bound = False

    def is_valid(self):
        return True if self.section_absent else super().is_valid()

    def save(self, commit=True):
        if self.section_absent:
            self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
            return []
        return super().save(commit)


class ApplicationStatusFormSet(_OptionalSectionFormSet):
    def clean(self):
        super().clean()
        kept = [form for form in self.forms if form.has_changed() or form.instance.pk is not None]
        kept = [form for form in kept if not self._should_delete_form(form) and getattr(form, "cleaned_data", None)]
        problems = []
        for form in self.forms:
            if not self._should_delete_form(form) or form.instance.pk is None:
                continue
            status = form.instance
            if (
                Application.objects.filter(status=status).exists()
                or ApplicationStatusChange.objects.filter(Q(from_status=status) | Q(to_status=status)).exists()
            ):
                problems.append(
                    _("「%(label)s」は申請で使われているため削除できません。") % {"label": status.label}
                )
        if not kept:
            problems.append(_("状態を1つ以上設定してください。"))
        else:
            initial = [form for form in kept if form.cleaned_data.get("is_initial")]
            if len(initial) != 1:
                problems.append(_("「最初の状態」は1つだけ選んでください（現在 %(count)s 個）。") % {"count": len(initial)})
            codes = {form.cleaned_data.get("code") or form.instance.code for form in kept}
            if WITHDRAWN_CODE not in codes and any(form.cleaned_data.get("allows_withdrawal") for form in kept):
                problems.append(
                    _("住民が取り下げできる状態があるときは、コード「%(code)s」の状態（取下げ）が必要です。")
                    % {"code": WITHDRAWN_CODE}
                )
        if problems:
            raise forms.ValidationError(problems)


class ApplicationStatusInline(_ProcedurePartInline, admin.TabularInline):
    model = ApplicationStatus
    form = ApplicationStatusForm
    formset = ApplicationStatusFormSet
    extra = 0
    verbose_name = gettext_lazy("申請の状態")
    verbose_name_plural = gettext_lazy(
        "申請の状態（お知らせの文面に使える差し込み項目: {受付番号} {手続き名} {状態} {リンク}。回答は使えません）"
    )


class StatusTransitionInline(_ProcedurePartInline, admin.TabularInline):
    model = StatusTransition
    formset = _OptionalSectionFormSet
    fields = ["from_status", "to_status", "notify"]
    extra = 0
    verbose_name = gettext_lazy("状態の変更ルール")
    verbose_name_plural = gettext_lazy("状態の変更ルール（職員が変更できる組み合わせ）")

    def get_formset(self, request, obj=None, **kwargs):
        request._workflow_procedure = obj  # this request's procedure, for the status choices below
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in ("from_status", "to_status"):
            procedure = getattr(request, "_workflow_procedure", None)
            queryset = ApplicationStatus.objects.filter(procedure=procedure) if procedure is not None else None
            kwargs["queryset"] = queryset if queryset is not None else ApplicationStatus.objects.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class StaffFieldForm(forms.ModelForm):
    class Meta:
        model = StaffField
        fields = ["key", "label", "kind", "choices", "order"]
        widgets = {
            "key": forms.TextInput(attrs={"size": 16}),
            "label": forms.TextInput(attrs={"size": 16}),
            "choices": forms.Textarea(attrs={"rows": 2, "cols": 24}),
            "order": forms.NumberInput(attrs={"style": "width: 4em"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "key" in self.fields:
            self.fields["key"].disabled = True  # the stored values of every application are kept under it


class StaffFieldInline(_ProcedurePartInline, admin.TabularInline):
    model = StaffField
    form = StaffFieldForm
    formset = _OptionalSectionFormSet
    extra = 0
    verbose_name = gettext_lazy("管理項目")
    verbose_name_plural = gettext_lazy("管理項目（職員だけが記録・閲覧する項目。住民には表示されません）")


class ApplicationStatusFilter(admin.SimpleListFilter):
    """Filter by status: statuses with the same code (e.g. every procedure's 受付) are one choice."""

    title = gettext_lazy("状態")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        labels: dict[str, list[str]] = {}
        visible = policy.procedures_visible_to(request.user)
        rows = (
            ApplicationStatus.objects.filter(procedure__in=visible)
            .order_by("order", "code", "id")
            .values_list("code", "label")
        )
        for code, label in rows:
            names = labels.setdefault(code, [])
            if label not in names:
                names.append(label)
        return [(code, "／".join(names)) for code, names in labels.items()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(status__code=self.value())
        return queryset


def status_history_html(application: Application) -> str:
    changes = list(
        ApplicationStatusChange.objects.filter(application=application)
        .select_related("from_status", "to_status", "actor")
        .order_by("created_at", "id")
    )
    if not changes:
        return _("（変更はまだありません）")
    rows = []
    for change in changes:
        who = change.get_via_display()
        if change.actor is not None:
            who = f"{who}（{change.actor.get_username()}）"
        rows.append(
            (
                timezone.localtime(change.created_at).strftime("%Y-%m-%d %H:%M"),
                change.from_status.label if change.from_status else "—",
                change.to_status.label,
                who,
                _("送信") if change.notified else "—",
                change.note or "",
            )
        )
    head = (_("日時"), _("変更前"), _("変更後"), _("変更した人"), _("LINE 通知"), _("メモ"))
    return format_html(
        '<table class="procedure-status-history"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        format_html_join("", "<th>{}</th>", ((item,) for item in head)),
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
    )


def status_actions_html(application: Application) -> str:
    """Buttons to each allowed next status, posted (with the change form's CSRF token) to the status view."""
    choices = next_statuses(application=application)
    if not choices:
        return _("この状態からは変更できません。")
    url = reverse("admin:procedures_application_status", args=[application.pk])
    buttons = format_html_join(
        " ",
        '<button type="submit" class="button" formaction="{}" formmethod="post" name="to_status" value="{}">{}</button>',
        (
            (url, status.pk, _("「%(label)s」にする%(notice)s") % {
                "label": status.label, "notice": _("（LINE でお知らせ）") if notifies else ""})
            for status, notifies in choices
        ),
    )
    note = format_html(
        '<div><label for="id_status_note" style="width: auto; float: none">{}</label></div>'
        '<textarea id="id_status_note" name="status_note" rows="2" cols="60" maxlength="{}"></textarea>',
        _("メモ（任意・職員だけが見ます）"),
        STATUS_NOTE_MAX,
    )
    return format_html('<div class="procedure-status-actions">{}<p>{}</p></div>', note, buttons)



# --------------------------------------------------------------------------
# Procedures
# --------------------------------------------------------------------------


LIST_COLUMNS_FIELDSET = (gettext_lazy("申請一覧"), {"fields": ["list_columns"]})


def latest_published_steps(procedure: Procedure) -> list:
    """The input steps of the procedure's newest published version (labels for the inbox's columns)."""
    version = (
        ProcedureVersion.objects.filter(procedure=procedure, status=ProcedureVersion.Status.PUBLISHED)
        .order_by("-number")
        .first()
    )
    if version is None:
        return []
    return [step for step in _version_steps(version_spec_data(version)) if step.is_input]


def list_columns_field(procedure: Procedure) -> forms.MultipleChoiceField:
    choices = [(step.key, truncate(step.label or step.key, 40)) for step in latest_published_steps(procedure)]
    known = {key for key, _label in choices}
    # Columns chosen for questions a newer version dropped stay listed, so they can be taken off.
    choices += [(key, key) for key in procedure.list_columns or [] if isinstance(key, str) and key not in known]
    return forms.MultipleChoiceField(
        label=gettext_lazy("一覧に表示する回答"),
        choices=choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy(
            "申請の一覧をこの手続きで絞り込んだとき、列として表示する質問（公開中の版から選べます）。機微情報は伏せ字、画像は「画像あり」と表示します。"
        ),
    )


@admin.register(Procedure)
class ProcedureAdmin(ScopedAdminMixin, admin.ModelAdmin):
    scope_actions = {"export_templates": "export"}
    form = ProcedureForm
    list_display = ["name", "department", "is_open", "published_number", "has_draft", "links"]
    list_display_links = ["name"]
    list_filter = ["is_open", "department"]
    search_fields = ["name", "keywords", "receipt_prefix"]
    fieldsets = [
        (None, {"fields": ["name", "description", "keywords", "receipt_prefix", "department", "needs_staff_review"]}),
        (gettext_lazy("受付の状態"), {"fields": ["is_open", "current_version"]}),
        (gettext_lazy("保存期間"), {"fields": ["retention_days", "confirm_retention_shortening"]}),
    ]
    readonly_fields = ["is_open", "current_version"]
    actions = ["export_templates", "close_procedures", "reopen_procedures"]
    inlines = [ApplicationStatusInline, StatusTransitionInline, StaffFieldInline]
    Media = BuilderMedia

    def get_queryset(self, request):
        drafts = ProcedureVersion.objects.filter(procedure=OuterRef("pk"), status=ProcedureVersion.Status.DRAFT)
        return (
            super()
            .get_queryset(request)
            .select_related("department", "current_version")
            .annotate(draft_id=Subquery(drafts.values("pk")[:1]))
        )

    def get_inlines(self, request, obj):
        # The statuses of a new procedure are the defaults, made when it is saved; edited afterwards.
        return self.inlines if obj is not None else []

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # creating: the state follows from publishing later; nothing to delete yet
            return [self.fieldsets[0], (gettext_lazy("保存期間"), {"fields": ["retention_days"]})]
        return [*self.fieldsets, LIST_COLUMNS_FIELDSET]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None and "list_columns" in form.base_fields:
            form.base_fields["list_columns"] = list_columns_field(obj)
        return form

    @admin.display(description=gettext_lazy("公開中の版"))
    def published_number(self, obj):
        if obj.current_version_id is None:
            return "—"
        return _("第%(number)s版") % {"number": obj.current_version.number}

    @staticmethod
    def _draft_id(obj):
        if hasattr(obj, "draft_id"):
            return obj.draft_id
        draft = obj.draft
        return draft.pk if draft else None

    @admin.display(description=gettext_lazy("下書き"), boolean=True)
    def has_draft(self, obj):
        return self._draft_id(obj) is not None

    @admin.display(description=gettext_lazy("操作"))
    def links(self, obj):
        flow_version_id = self._draft_id(obj) or obj.current_version_id
        parts = [
            (reverse("admin:procedures_procedure_draft", args=[obj.pk]), _("下書きを編集")),
            (_simulator_url(obj.pk), _("試す")),
        ]
        if flow_version_id:
            parts.append((_flow_url(flow_version_id), _("フロー図")))
        return format_html_join(" | ", '<a href="{}">{}</a>', parts)

    def has_delete_permission(self, request, obj=None):
        # A procedure that has been published is a public record: stop accepting (受付を停止する) instead.
        if obj is not None and obj.current_version_id is not None:
            return False
        return super().has_delete_permission(request, obj)

    # -- create: every new procedure starts with its draft -------------------

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            draft_get_or_create(procedure=obj)

    def response_add(self, request, obj, post_url_continue=None):
        if any(key in request.POST for key in ("_continue", "_addanother", "_popup")):
            return super().response_add(request, obj, post_url_continue)
        draft = obj.draft
        messages.success(
            request, _("手続き「%(name)s」を作成しました。下書きにステップを追加してください。") % {"name": obj.name}
        )
        return HttpResponseRedirect(_version_url(draft.pk) if draft else reverse("admin:procedures_procedure_changelist"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        procedure = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if procedure is not None:
            versions = list(procedure.versions.select_related("published_by").order_by("-number"))
            draft = next((v for v in versions if v.is_draft), None)
            flow_version = draft or next((v for v in versions if v.pk == procedure.current_version_id), None)
            extra.update(
                versions=[
                    {"version": v, "state": _version_state(v, procedure), "url": _version_url(v.pk)} for v in versions
                ],
                draft_url=reverse("admin:procedures_procedure_draft", args=[procedure.pk]),
                simulator_url=_simulator_url(procedure.pk),
                proxy_entry_url=_proxy_entry_url(procedure, request.user),
                flow_url=_flow_url(flow_version.pk) if flow_version else "",
                has_draft=draft is not None,
            )
        return super().change_view(request, object_id, form_url, extra)

    # -- actions -------------------------------------------------------------

    @admin.action(description=gettext_lazy("テンプレートとして書き出す"), permissions=["view"])
    def export_templates(self, request, queryset):
        files = []
        for procedure in queryset.order_by("name"):
            try:
                data = procedure_export_data(procedure=procedure)
            except ProblemsError as error:
                for message in error.messages:
                    messages.error(request, f"{procedure.name}: {message}")
                continue
            content = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")
            files.append((f"procedure-{procedure.receipt_prefix or procedure.pk}.json", content))
        if not files:
            return None
        if len(files) == 1:
            name, content = files[0]
            response = HttpResponse(content, content_type="application/json; charset=utf-8")
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for file_name, content in files:
                    archive.writestr(file_name, content)
            name = f"procedure-templates-{timezone.localdate():%Y%m%d}.zip"
            response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.action(description=gettext_lazy("受付を停止する"), permissions=["change"])
    def close_procedures(self, request, queryset):
        names = []
        for procedure in queryset:
            procedure_close(procedure=procedure, actor=request.user)
            names.append(procedure.name)
        messages.success(
            request,
            _("受付を停止しました: %(names)s。住民は新たに始められず、進行中の会話も終了します。")
            % {"names": "、".join(names)},
        )

    @admin.action(description=gettext_lazy("受付を再開する"), permissions=["change"])
    def reopen_procedures(self, request, queryset):
        reopened, unpublished = [], []
        for procedure in queryset:
            (reopened if procedure_reopen(procedure=procedure, actor=request.user) else unpublished).append(procedure.name)
        if reopened:
            messages.success(request, _("受付を再開しました: %(names)s") % {"names": "、".join(reopened)})
        if unpublished:
            messages.error(
                request,
                _("公開された版がないため再開できません（先に公開してください）: %(names)s") % {"names": "、".join(unpublished)},
            )

    # -- extra pages -----------------------------------------------------------

    def get_urls(self):
        urls = [
            path("import/", self.admin_site.admin_view(self.import_view), name="procedures_procedure_import"),
            path(
                "<int:object_id>/draft/",
                self.admin_site.admin_view(self.draft_view),
                name="procedures_procedure_draft",
            ),
        ]
        return urls + super().get_urls()

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        max_bytes = settings.PROCEDURE_IMPORT_MAX_BYTES
        departments = policy.departments_for(request.user, policy.BUILD)
        problems: list[str] = []
        if request.method == "POST":
            form = TemplateImportForm(request.POST, request.FILES, max_bytes=max_bytes, departments=departments)
            if form.is_valid():
                try:
                    procedure = procedure_import(
                        raw=form.cleaned_data["file"].read(),
                        max_bytes=max_bytes,
                        department=form.cleaned_data["department"],
                        receipt_prefix=form.cleaned_data["receipt_prefix"],
                    )
                except ProblemsError as error:
                    problems = list(error.messages)
                else:
                    messages.success(
                        request,
                        _("テンプレートから「%(name)s」を作成しました。下書きを確認してから公開してください。")
                        % {"name": procedure.name},
                    )
                    draft = procedure.draft
                    url = _version_url(draft.pk) if draft else reverse("admin:procedures_procedure_change", args=[procedure.pk])
                    return HttpResponseRedirect(url)
        else:
            form = TemplateImportForm(max_bytes=max_bytes, departments=departments)
        context = {
            **self.admin_site.each_context(request),
            "title": _("テンプレートを読み込む"),
            "opts": self.model._meta,
            "form": form,
            "adminform": helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
            "problems": problems,
            "max_bytes": max_bytes,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/procedures/procedure/import_form.html", context)

    def draft_view(self, request, object_id):
        procedure = get_object_or_404(Procedure, pk=object_id)
        draft = procedure.draft
        if draft is not None:
            return HttpResponseRedirect(_version_url(draft.pk))
        if not self.has_change_permission(request, procedure):
            raise PermissionDenied
        if request.method == "POST":
            draft = draft_get_or_create(procedure=procedure)
            messages.success(
                request, _("第%(number)s版の下書きを作成しました（公開中の内容のコピー）。") % {"number": draft.number}
            )
            return HttpResponseRedirect(_version_url(draft.pk))
        context = {
            **self.admin_site.each_context(request),
            "title": _("下書きを作成する"),
            "opts": self.model._meta,
            "original": procedure,
            "procedure": procedure,
        }
        return TemplateResponse(request, "admin/procedures/procedure/draft_confirm.html", context)


# --------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------


class ComputedValueInline(ScopedAdminMixin, admin.TabularInline):
    model = ComputedValue
    form = ComputedValueForm
    fields = ["position", "key", "label", "unit", "constant", "terms"]
    extra = 0
    verbose_name = gettext_lazy("計算項目")
    verbose_name_plural = gettext_lazy("計算項目（手数料など）")

    def get_formset(self, request, obj=None, **kwargs):
        kwargs["form"] = computed_value_form_for(obj)
        return super().get_formset(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is not None and not obj.is_draft:
            return ["position", "key", "label", "unit", "constant", "terms_words"]
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        return ["terms_words"] if obj is not None and not obj.is_draft else []

    @admin.display(description=gettext_lazy("計算式"))
    def terms_words(self, obj):
        steps = {step.get("key"): step for step in version_spec_data(obj.version).get("steps") or []}
        parts = []
        for term in obj.terms or []:
            step = steps.get(term.get("step"), {})
            factor = term.get("factor", 1)
            if isinstance(factor, float) and factor.is_integer():
                factor = int(factor)
            parts.append(f"{truncate(step.get('label') or term.get('step'), 20)} × {factor}")
        return " ＋ ".join(parts) or "—"

    def get_extra(self, request, obj=None, **kwargs):
        return 1 if obj is not None and obj.is_draft else 0

    def has_add_permission(self, request, obj=None):
        return (obj is None or obj.is_draft) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return (obj is None or obj.is_draft) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return (obj is None or obj.is_draft) and super().has_delete_permission(request, obj)


@admin.register(ProcedureVersion)
class ProcedureVersionAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "procedure", "number", "status", "published_at", "published_by"]
    list_filter = ["status", "procedure"]
    list_select_related = ["procedure", "published_by"]
    fields = ["procedure", "number", "status", "restored_from", "created_at", "published_at", "published_by"]
    readonly_fields = fields
    inlines = [ComputedValueInline]
    Media = BuilderMedia

    def has_add_permission(self, request):
        return False  # versions are made by publishing, drafts and restoring

    def has_change_permission(self, request, obj=None):
        if obj is not None and not obj.is_draft:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and not obj.is_draft:
            return False
        return super().has_delete_permission(request, obj)

    def get_urls(self):
        def view(function, suffix):
            return path(
                f"<int:object_id>/{suffix}/",
                self.admin_site.admin_view(function),
                name=f"procedures_procedureversion_{suffix.replace('-', '_')}",
            )

        return [
            view(self.publish_view, "publish"),
            view(self.restore_view, "restore"),
            view(self.move_step_view, "move-step"),
            view(self.flow_view, "flow"),
        ] + super().get_urls()

    # -- the change page: steps, problems, publish / restore -----------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if version is not None:
            extra.update(self._panel_context(request, version))
        return super().change_view(request, object_id, form_url, extra)

    def _panel_context(self, request, version: ProcedureVersion) -> dict:
        procedure = version.procedure
        data = version_spec_data(version)
        step_specs = data.get("steps") or []
        rows = []
        if version.is_draft:
            steps = list(version.steps.order_by("position", "id").prefetch_related("choices"))
            for index, step in enumerate(steps):
                rows.append(
                    {
                        "id": step.pk,
                        "position": step.position,
                        "kind": step.kind,
                        "kind_label": kind_label(step.kind),
                        "symbol": KIND_SYMBOLS.get(step.kind, ""),
                        "key": step.key,
                        "label": truncate(step.label, 60),
                        "required": step.required and step.kind not in FLOW_KINDS,
                        "sensitive": step.sensitive,
                        "condition": condition_text(step.condition, step_specs),
                        "edit_url": reverse("admin:procedures_step_change", args=[step.pk]),
                        "delete_url": reverse("admin:procedures_step_delete", args=[step.pk]),
                        "first": index == 0,
                        "last": index == len(steps) - 1,
                    }
                )
        else:
            for step in step_specs:
                kind = step.get("kind", "")
                rows.append(
                    {
                        "kind": kind,
                        "kind_label": kind_label(kind),
                        "symbol": KIND_SYMBOLS.get(kind, ""),
                        "key": step.get("key", ""),
                        "label": truncate(step.get("label", ""), 60),
                        "required": step.get("required", True) and kind not in FLOW_KINDS,
                        "sensitive": step.get("sensitive", False),
                        "condition": condition_text(step.get("condition"), step_specs),
                    }
                )
        content_types = ContentType.objects.get_for_models(*STEP_MODELS.values(), for_concrete_models=False)
        kinds = [(content_types[model].pk, kind_label(kind)) for kind, model in STEP_MODELS.items()]
        can_edit = version.is_draft and self.has_change_permission(request, version)
        return {
            "procedure": procedure,
            "version": version,
            "is_draft": version.is_draft,
            "can_edit": can_edit,
            "can_restore": not version.is_draft and self.has_change_permission(request),
            "version_state": _version_state(version, procedure),
            "step_rows": rows,
            "step_kinds": kinds,
            "step_add_url": reverse("admin:procedures_step_add"),
            "problems": version_problems(version) if version.is_draft else [],
            "flow_url": _flow_url(version.pk),
            "simulator_url": _simulator_url(procedure.pk, version.pk),
            "procedure_url": reverse("admin:procedures_procedure_change", args=[procedure.pk]),
            "draft_url": _version_url(procedure.draft.pk) if not version.is_draft and procedure.draft else "",
        }

    def publish_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = get_object_or_404(ProcedureVersion.objects.select_related("procedure"), pk=object_id)
        if not version.is_draft:
            messages.error(request, _("このバージョンはすでに公開されています。"))
            return HttpResponseRedirect(_version_url(version.pk))
        if not self.has_change_permission(request, version):
            raise PermissionDenied
        try:
            published = version_publish(version=version, user=request.user)
        except ProblemsError as error:
            for message in error.messages:
                messages.error(request, message)
            return HttpResponseRedirect(_version_url(version.pk))
        messages.success(
            request,
            _("「%(name)s」第%(number)s版を公開しました。受付を開始しました。")
            % {"name": published.procedure.name, "number": published.number},
        )
        return HttpResponseRedirect(reverse("admin:procedures_procedure_change", args=[published.procedure_id]))

    def restore_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = get_object_or_404(ProcedureVersion.objects.select_related("procedure"), pk=object_id)
        if version.is_draft or not self.has_change_permission(request):
            raise PermissionDenied
        try:
            draft = version_restore(version=version)
        except ProblemsError as error:
            for message in error.messages:
                messages.error(request, message)
            return HttpResponseRedirect(_version_url(version.pk))
        messages.success(
            request,
            _("第%(source)s版の内容を下書き（第%(draft)s版）に復元しました。確認してから公開してください。")
            % {"source": version.number, "draft": draft.number},
        )
        return HttpResponseRedirect(_version_url(draft.pk))

    def move_step_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = get_object_or_404(ProcedureVersion, pk=object_id)
        if not self.has_change_permission(request, version):
            raise PermissionDenied
        direction = request.POST.get("direction")
        try:
            step_id = int(request.POST.get("step", ""))
        except ValueError:
            step_id = None
        if direction not in ("up", "down") or step_id is None:
            messages.error(request, _("並べ替えの指定が正しくありません。"))
        else:
            try:
                step_move(version=version, step_id=step_id, direction=direction)
            except ProblemsError as error:
                for message in error.messages:
                    messages.error(request, message)
        return HttpResponseRedirect(_version_url(version.pk) + "#steps")

    def flow_view(self, request, object_id):
        version = get_object_or_404(ProcedureVersion.objects.select_related("procedure"), pk=object_id)
        if not self.has_view_or_change_permission(request, version):
            raise PermissionDenied
        data = version_spec_data(version)
        flow = flow_build(data)
        links = {}
        if version.is_draft:
            links = {
                step.key: reverse("admin:procedures_step_change", args=[step.pk])
                for step in Step.objects.filter(version=version).non_polymorphic()
            }
        steps = data.get("steps") or []
        outline = [
            {
                "key": step.get("key", ""),
                "kind_label": kind_label(step.get("kind", "")),
                "label": step.get("label", ""),
                "condition": condition_text(step.get("condition"), steps),
            }
            for step in steps
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("フロー図: %(name)s 第%(number)s版") % {"name": version.procedure.name, "number": version.number},
            "opts": self.model._meta,
            "original": version,
            "version": version,
            "procedure": version.procedure,
            "version_state": _version_state(version, version.procedure),
            "svg": flow_svg(flow, links),
            "outline": outline,
            "version_url": _version_url(version.pk),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/procedures/procedureversion/flow.html", context)


# --------------------------------------------------------------------------
# Steps: one polymorphic parent, one child admin per kind
# --------------------------------------------------------------------------


def _draft_only(obj) -> bool:
    """True unless obj is a step (or choice) of a published version."""
    if obj is None:
        return True
    version = obj.version if isinstance(obj, Step) else obj.step.version
    return version.is_draft


class StepKindForm(PolymorphicModelChoiceForm):
    type_label = gettext_lazy("ステップの種類")


class StepKindFilter(PolymorphicChildModelFilter):
    title = gettext_lazy("種類")


@admin.register(Step)
class StepParentAdmin(ScopedAdminMixin, PolymorphicParentModelAdmin):
    base_model = Step
    child_models = tuple(STEP_MODELS.values())
    add_type_form = StepKindForm
    list_display = ["short_label", "kind_name", "key", "version", "position"]
    list_filter = [StepKindFilter, "version__procedure"]
    list_select_related = ["version__procedure", "polymorphic_ctype"]
    search_fields = ["key", "label"]

    @admin.display(description=gettext_lazy("質問・表示文"))
    def short_label(self, obj):
        return truncate(obj.label, 40)

    @admin.display(description=gettext_lazy("種類"))
    def kind_name(self, obj):
        model = obj.polymorphic_ctype.model_class() if obj.polymorphic_ctype_id else None
        return kind_label(model.kind) if model is not None else "—"

    def has_change_permission(self, request, obj=None):
        return _draft_only(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return _draft_only(obj) and super().has_delete_permission(request, obj)


class StepChoiceInline(ScopedAdminMixin, admin.TabularInline):
    model = StepChoice
    fields = ["position", "value", "label", "amount"]
    extra = 1
    verbose_name = gettext_lazy("選択肢")
    verbose_name_plural = gettext_lazy("選択肢")

    def has_add_permission(self, request, obj=None):
        return _draft_only(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return _draft_only(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return _draft_only(obj) and super().has_delete_permission(request, obj)


BUILDER_ROWS = tuple(
    (rule_field(number, "step"), rule_field(number, "op"), rule_field(number, "operator"), rule_field(number, "value"))
    for number in range(1, MAX_RULES + 1)
)


class StepChildAdmin(ScopedAdminMixin, PolymorphicChildModelAdmin):
    """The edit page of one step kind (registered below for every kind in STEP_MODELS)."""

    base_model = Step
    form = StepForm
    Media = BuilderMedia

    def get_fieldsets(self, request, obj=None):
        kind = self.model.kind
        base = ["version", "position", "key", "label", "help_text"]
        if kind not in FLOW_KINDS:
            base.append(("required", "sensitive"))
        fieldsets = [(None, {"fields": base})]
        options = list(self.model.option_fields.values())
        if options:
            fieldsets.append((_("設定"), {"fields": options}))
        if kind in PROFILE_TARGET_KINDS:
            fieldsets.append(
                (
                    _("住民の属性"),
                    {
                        "fields": ["profile_target"],
                        "description": _(
                            "申請されたとき、この回答で住民の属性（または受信カテゴリ）を更新します。"
                            "機微情報のステップの回答は保存できません。"
                        ),
                    },
                )
            )
        if obj is not None and not obj.version.is_draft:
            fieldsets.append((_("表示条件"), {"fields": ["condition_words", "condition_json"]}))
        else:
            fieldsets.append(
                (
                    _("表示条件"),
                    {
                        "fields": ["condition_combine", *BUILDER_ROWS, "condition_json"],
                        "description": _(
                            "条件を入れると、条件に合うときだけこのステップを使います。"
                            "比べられるのは、このステップより前の質問だけです。空欄なら、いつも使います。"
                        ),
                    },
                )
            )
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        fields = ["condition_json"]
        if obj is not None:
            fields.append("version")
            if not obj.version.is_draft:
                fields.append("condition_words")
        return fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "version":
            kwargs["queryset"] = ProcedureVersion.objects.filter(status=ProcedureVersion.Status.DRAFT).select_related(
                "procedure"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        try:
            version_id = int(request.GET.get("version", ""))
        except ValueError:
            return initial
        last = Step.objects.filter(version_id=version_id).order_by("-position").values_list("position", flat=True).first()
        initial["version"] = version_id
        initial["position"] = (last or 0) + 10
        return initial

    def has_change_permission(self, request, obj=None):
        return _draft_only(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return _draft_only(obj) and super().has_delete_permission(request, obj)

    @admin.display(description=gettext_lazy("表示条件（JSON・参照用）"))
    def condition_json(self, obj):
        condition = getattr(obj, "condition", None)
        if not condition:
            return _("（条件なし：いつも使います）")
        note = ""
        if condition_to_rules(condition) is None:
            note = format_html(
                '<p class="procedure-note">{}</p>',
                _("この条件は入れ子など、上の組み立て欄では表せない形のため、変更せずにそのまま保存されます。"),
            )
        return format_html(
            '<pre class="procedure-json">{}</pre>{}', json.dumps(condition, ensure_ascii=False, indent=2), note
        )

    @admin.display(description=gettext_lazy("表示条件"))
    def condition_words(self, obj):
        if obj is None or not obj.condition:
            return _("（条件なし：いつも使います）")
        steps = version_spec_data(obj.version).get("steps") or []
        return _("%(condition)s のとき") % {"condition": condition_text(obj.condition, steps)}

    # -- after saving or deleting: back to the version page ---------------------

    def _back_to_version(self, obj):
        return HttpResponseRedirect(_version_url(obj.version_id) + "#steps")

    def response_post_save_add(self, request, obj):
        return self._back_to_version(obj)

    def response_post_save_change(self, request, obj):
        return self._back_to_version(obj)

    def response_add(self, request, obj, post_url_continue=None):
        if "_addanother" in request.POST:
            messages.success(request, _("「%(label)s」を追加しました。") % {"label": truncate(obj.label, 30)})
            content_type = ContentType.objects.get_for_model(self.model, for_concrete_model=False)
            return HttpResponseRedirect(
                reverse("admin:procedures_step_add") + f"?ct_id={content_type.pk}&version={obj.version_id}"
            )
        return super().response_add(request, obj, post_url_continue)

    def delete_view(self, request, object_id, context=None):
        step = Step.objects.non_polymorphic().filter(pk=unquote(str(object_id))).first()
        response = super().delete_view(request, object_id, context)
        if request.method == "POST" and step is not None and response.status_code == 302:
            return self._back_to_version(step)
        return response


for _kind, _model in STEP_MODELS.items():
    _attrs = {"base_model": Step, "__module__": __name__}
    if _kind in CHOICE_KINDS:
        _attrs["inlines"] = [StepChoiceInline]
    if _kind == "date":
        _attrs["form"] = DateStepForm
    admin.site.register(_model, type(f"{_model.__name__}Admin", (StepChildAdmin,), _attrs))


# --------------------------------------------------------------------------
# Applications (read-only; test applications hidden unless asked for)
# --------------------------------------------------------------------------


class TestApplicationFilter(admin.SimpleListFilter):
    title = gettext_lazy("テスト申請")
    parameter_name = "tests"

    def lookups(self, request, model_admin):
        return [("show", _("テスト申請を表示")), ("only", _("テスト申請だけ"))]

    def queryset(self, request, queryset):
        if self.value() == "only":
            return queryset.filter(is_test=True)
        return queryset

    def choices(self, changelist):
        choices = list(super().choices(changelist))
        if choices:
            choices[0]["display"] = _("テスト申請を除く")
        return choices


def _shows_tests(request) -> bool:
    return request.GET.get(TestApplicationFilter.parameter_name) in ("show", "only")


def _version_steps(spec_data: dict):
    try:
        return parse_spec(spec_data).steps
    except SpecError:
        return ()  # an unreadable draft: nothing is known about sensitivity, so everything stays masked


def answer_rows(
    spec_data: dict, answers: dict, *, revealed=frozenset(), image_url=None
) -> list[tuple[str, str]]:
    """(label, shown value) for every question of the version; sensitive answers masked.

    `revealed`: keys whose sensitive values are shown (one response of the reveal page only).
    `image_url(key)`: the access-checked link for an image answer (procedures/attachments.py);
    without it an image reads as 画像1枚.
    """
    answers = answers if isinstance(answers, dict) else {}
    steps = _version_steps(spec_data)
    rows = []
    for step in steps:
        if not step.is_input:
            continue
        label = truncate(step.label or step.key, 60)
        if answers.get(step.key) is None:
            rows.append((label, _("（回答なし）")))
        elif step.sensitive and step.key not in revealed:
            rows.append((label, MASK))
        elif step.kind == "image" and image_url is not None:
            rows.append((label, format_html(
                '<a href="{}" target="_blank" rel="noopener">{}</a>', image_url(step.key), _("画像を開く（別タブ）")
            )))
        else:
            rows.append((label, answer_text(step, answers[step.key])))
    # Answers the version does not describe: their sensitivity is unknown, so they stay masked.
    known = {step.key for step in steps}
    rows.extend(
        (str(key), str(answers[key]) if key in revealed else MASK) for key in answers if key not in known
    )
    return rows


def revealable_answers(spec_data: dict, answers: dict) -> list[tuple[str, str]]:
    """(key, label) of the answered sensitive questions, and of answers the version does not describe."""
    answers = answers if isinstance(answers, dict) else {}
    steps = _version_steps(spec_data)
    found = [
        (step.key, truncate(step.label or step.key, 30))
        for step in steps
        if step.is_input and step.sensitive and answers.get(step.key) is not None
    ]
    known = {step.key for step in steps}
    found.extend(
        (key, key) for key in answers if key not in known and isinstance(key, str) and KEY_PATTERN.match(key)
    )
    return found


def reveal_buttons_html(application: Application, keys: list[tuple[str, str]]) -> str:
    """「表示する」 buttons posted (with the change form's CSRF token) to the reveal page."""
    url = reverse("admin:procedures_application_reveal", args=[application.pk])
    button = '<button type="submit" class="button" formaction="{}" formmethod="post" name="reveal" value="{}">{}</button>'
    buttons = format_html_join(
        " ", button, ((url, key, _("表示する：%(label)s") % {"label": label}) for key, label in keys)
    )
    everything = format_html(button, url, REVEAL_ALL, _("すべて表示する"))
    return format_html(
        '<div class="procedure-reveal"><p>{}</p><p>{} {}</p></div>',
        _("伏せ字の回答は、ボタンを押したときだけ表示します（表示は記録されます）。"),
        buttons,
        everything,
    )


# --------------------------------------------------------------------------
# The staff inbox: filters, per-procedure answer columns, assignment, 要対応, 管理項目, bulk actions
# --------------------------------------------------------------------------

ASSIGNEE_ME = "me"
ASSIGNEE_NONE = "none"


class ProcedureFilter(admin.SimpleListFilter):
    """Every procedure the user can see, also those without applications (a filter to one of them shows none)."""

    title = gettext_lazy("手続き")
    parameter_name = "procedure__id__exact"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in policy.procedures_visible_to(request.user).values_list("pk", "name")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not (value.isascii() and value.isdigit()):
            messages.error(request, _("手続きの条件が正しくありません。右の「手続き」から選び直してください。"))
            return queryset.none()
        return queryset.filter(procedure_id=int(value))


class AssigneeFilter(admin.SimpleListFilter):
    title = gettext_lazy("担当")
    parameter_name = "assignee"

    def lookups(self, request, model_admin):
        return [(ASSIGNEE_ME, _("自分")), (ASSIGNEE_NONE, _("未割当"))] + [
            (str(user.pk), user.get_username()) for user in staff_who_may_process(viewer=request.user)
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == ASSIGNEE_ME:
            return queryset.filter(assignee_id=request.user.pk)
        if value == ASSIGNEE_NONE:
            return queryset.filter(assignee__isnull=True)
        if value is not None:
            if not (value.isascii() and value.isdigit()):
                messages.error(request, _("担当の条件が正しくありません。右の「担当」から選び直してください。"))
                return queryset.none()
            return queryset.filter(assignee_id=int(value))
        return queryset


def _parse_day(raw: str) -> date:
    text = unicodedata.normalize("NFKC", raw or "").strip().replace("/", "-")
    return date.fromisoformat(text)


class SubmittedRangeFilter(admin.ListFilter):
    """Submitted between two dates (both included, local time); a date that cannot be read is reported."""

    title = gettext_lazy("申請日（期間）")
    template = "admin/procedures/application/date_range_filter.html"
    FROM = "submitted_from"
    TO = "submitted_to"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in (self.FROM, self.TO):
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        self.start, self.end, problems = None, None, []
        for name, label in ((self.FROM, _("申請日（から）")), (self.TO, _("申請日（まで）"))):
            raw = (self.used_parameters.get(name) or "").strip()
            if not raw:
                continue
            try:
                day = _parse_day(raw)
            except ValueError:
                problems.append(
                    _("%(label)s「%(raw)s」は日付として読めません。2026-04-01 のように年-月-日で入力してください。")
                    % {"label": label, "raw": raw[:20]}
                )
                continue
            if name == self.FROM:
                self.start = day
            else:
                self.end = day
        if self.start and self.end and self.start > self.end:
            problems.append(_("申請日の期間は、終わりの日付を始まりの日付と同じか後にしてください。"))
            self.start = self.end = None
        if problems:
            problems.append(_("正しくない日付の条件は使わずに一覧を表示しています。"))
            for problem in problems:
                messages.error(request, problem)

    def has_output(self):
        return True

    def expected_parameters(self):
        return [self.FROM, self.TO]

    def queryset(self, request, queryset):
        zone = timezone.get_current_timezone()
        if self.start is not None:
            queryset = queryset.filter(submitted_at__gte=datetime.combine(self.start, time.min, tzinfo=zone))
        if self.end is not None:
            queryset = queryset.filter(submitted_at__lt=datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=zone))
        return queryset

    def choices(self, changelist):
        own = (self.FROM, self.TO, "p", "e")
        yield {
            "from": self.used_parameters.get(self.FROM, ""),
            "to": self.used_parameters.get(self.TO, ""),
            "hidden": [(name, value) for name, values in self.request.GET.lists() if name not in own for value in values],
            "clear_url": changelist.get_query_string(remove=[self.FROM, self.TO]),
        }


def _answer_column(key: str, label: str):
    """A list column with one answer: sensitive ones masked, images as 画像あり."""
    steps: dict[int, dict] = {}

    def column(obj):
        if obj.version_id not in steps:
            steps[obj.version_id] = {step.key: step for step in _version_steps(version_spec_data(obj.version))}
        step = steps[obj.version_id].get(key)
        answers = obj.answers if isinstance(obj.answers, dict) else {}
        if answers.get(key) is None:
            return "—"
        if step is None or step.sensitive:
            return MASK  # a version that does not describe the answer: its sensitivity is unknown
        if step.kind == "image":
            return _("画像あり")
        return truncate(answer_text(step, answers[key]), 40)

    column.short_description = label
    column.__name__ = f"answer_{key}"
    return column


class InboxActionForm(helpers.ActionForm):
    """The action bar with the choices some actions need (their options are filled per request)."""

    assignee = forms.CharField(required=False, label=gettext_lazy("担当にする職員"), widget=forms.Select)
    to_status = forms.CharField(required=False, label=gettext_lazy("変更後の状態"), widget=forms.Select)


def status_codes_visible_to(user) -> list[tuple[str, str]]:
    """(code, label) of the statuses of the procedures `user` can see; the same code is one choice."""
    labels: dict[str, list[str]] = {}
    rows = (
        ApplicationStatus.objects.filter(procedure__in=policy.procedures_visible_to(user))
        .order_by("order", "code", "id")
        .values_list("code", "label")
    )
    for code, label in rows:
        names = labels.setdefault(code, [])
        if label not in names:
            names.append(label)
    return [(code, "／".join(names)) for code, names in labels.items()]


def computed_rows(application: Application) -> list[tuple[str, str]]:
    computed = application.computed if isinstance(application.computed, dict) else {}
    items = {item.get("key"): item for item in version_spec_data(application.version).get("computed") or []}
    rows = []
    for key, value in computed.items():
        item = items.get(key, {})
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        rows.append((item.get("label") or key, f"{value}{item.get('unit') or ''}"))
    return rows


def staff_value_rows(application: Application, fields=None) -> list[tuple[StaffField, str]]:
    fields = fields if fields is not None else list(StaffField.objects.filter(procedure_id=application.procedure_id))
    values = application.staff_values if isinstance(application.staff_values, dict) else {}
    return [(field, field.display(values.get(field.key))) for field in fields]


def _staff_field_input(field: StaffField, value) -> str:
    name = f"sf-{field.key}"
    if field.kind == StaffField.Kind.LONG_TEXT:
        return format_html('<textarea name="{}" rows="3" cols="60">{}</textarea>', name, value or "")
    if field.kind in (StaffField.Kind.YES_NO, StaffField.Kind.CHOICE):
        if field.kind == StaffField.Kind.YES_NO:
            options = [("yes", _("はい"), value is True), ("no", _("いいえ"), value is False)]
        else:
            options = [(choice, choice, value == choice) for choice in field.choice_list]
        return format_html(
            '<select name="{}"><option value="">—</option>{}</select>',
            name,
            format_html_join(
                "", '<option value="{}"{}>{}</option>',
                ((option, " selected" if chosen else "", text) for option, text, chosen in options),
            ),
        )
    kind = "date" if field.kind == StaffField.Kind.DATE else "text"
    return format_html('<input type="{}" name="{}" value="{}" size="30">', kind, name, "" if value is None else value)


@admin.register(Application)
class ApplicationAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["receipt_number", "procedure", "submitted_at", "channel", "version_number", "status_label", "assignee_name",
                    "needs_action"]
    list_filter = [ProcedureFilter, ApplicationStatusFilter, AssigneeFilter, "needs_action", SubmittedRangeFilter,
                   ("submitted_at", DateFieldListFilter), TestApplicationFilter]
    list_select_related = ["procedure", "version", "status", "assignee"]
    search_fields = ["receipt_number"]
    fields = ["receipt_number", "procedure", "version", "submitted_at", "channel", "entered_by", "is_test", "resident",
              "assignee_panel",
              "needs_action_panel", "status_label", "status_actions", "status_history", "answers_table",
              "correspondence_panel", "computed_table", "staff_fields_panel", "other_applications", "timeline", "print_link"]
    readonly_fields = fields
    actions = ["assign_to_me", "assign_to_chosen", "mark_handled", "change_status"]
    action_form = InboxActionForm
    # Every bulk action changes applications: each selected one must allow the policy's "process".
    scope_actions = {name: policy.PROCESS for name in actions}
    # The status page (status_view) changes the application's status: the policy's "process".
    # The reveal page shows sensitive answers: the policy's "reveal_sensitive".
    scope_object_views = {
        "status": policy.PROCESS,
        "reveal": policy.REVEAL_SENSITIVE,
        "assign": policy.PROCESS,
        "handled": policy.PROCESS,
        "staff_fields": policy.PROCESS,
        "print": policy.VIEW,
        "message": policy.PROCESS,
        "correction": policy.PROCESS,
    }
    Media = BuilderMedia

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Who looks at this instance (this request only): answers_table offers what that user may do.
            obj._viewer = request.user
        return obj

    def get_queryset(self, request):
        match = request.resolver_match
        on_list = match is not None and match.url_name == "procedures_application_changelist"
        # The list leaves test applications out unless staff ask for them; a detail page opens either.
        return application_list(include_tests=not on_list or _shows_tests(request))

    # -- the list ------------------------------------------------------------------

    def _single_procedure(self, request) -> Procedure | None:
        """The procedure the list is filtered to, when it is exactly one the user can see."""
        raw = request.GET.get("procedure__id__exact", "")
        if not (raw.isascii() and raw.isdigit()):
            return None
        return policy.procedures_visible_to(request.user).filter(pk=int(raw)).first()

    def get_list_display(self, request):
        columns = list(self.list_display)
        procedure = self._single_procedure(request)
        if procedure is not None and procedure.list_columns:
            labels = {step.key: truncate(step.label or step.key, 20) for step in latest_published_steps(procedure)}
            columns += [
                _answer_column(key, labels.get(key, key)) for key in procedure.list_columns if isinstance(key, str)
            ]
        if _shows_tests(request):
            columns.append("is_test")
        return columns

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        action_form = (getattr(response, "context_data", None) or {}).get("action_form")
        if action_form is not None:
            action_form.fields["assignee"].widget.choices = [
                ("", "—"), (ASSIGNEE_NONE, _("（担当を外す）")),
                *((str(user.pk), user.get_username()) for user in staff_who_may_process(viewer=request.user)),
            ]
            action_form.fields["to_status"].widget.choices = [("", "—"), *status_codes_visible_to(request.user)]
        return response

    @admin.display(description=gettext_lazy("版"), ordering="version__number")
    def version_number(self, obj):
        return _("第%(number)s版") % {"number": obj.version.number}

    @admin.display(description=gettext_lazy("担当"), ordering="assignee__username")
    def assignee_name(self, obj):
        return obj.assignee.get_username() if obj.assignee_id else "—"

    # -- bulk actions (each application through the policy and the services; refusals reported) --

    def has_process_permission(self, request):
        return policy.can(request.user, policy.PROCESS, Application)

    def _report(self, request, results, done_text: str) -> None:
        done = [result.receipt_number for result in results if result.done and not result.message]
        unchanged = [result.receipt_number for result in results if result.done and result.message]
        if done:
            messages.success(request, done_text % {"receipts": "、".join(done)})
        if unchanged:
            messages.info(request, _("変更のなかった申請：%(receipts)s") % {"receipts": "、".join(unchanged)})
        for result in results:
            if not result.done:
                messages.warning(request, _("%(receipt)s：行いませんでした。%(reason)s") % {
                    "receipt": result.receipt_number, "reason": result.message})

    @admin.action(description=gettext_lazy("自分を担当にする"), permissions=["process"])
    def assign_to_me(self, request, queryset):
        results = applications_assign_bulk(applications=queryset, assignee=request.user, actor=request.user,
                                           request=request)
        self._report(request, results, _("担当を自分にしました：%(receipts)s"))

    @admin.action(description=gettext_lazy("選んだ職員を担当にする"), permissions=["process"])
    def assign_to_chosen(self, request, queryset):
        raw = (request.POST.get("assignee") or "").strip()
        if raw == ASSIGNEE_NONE:
            assignee = None
        elif raw.isascii() and raw.isdigit():
            assignee = get_user_model().objects.filter(pk=int(raw), is_active=True).first()
            if assignee is None:
                messages.error(request, _("選んだ職員が見つかりません。「担当にする職員」から選び直してください。"))
                return
        else:
            messages.error(request, _("「担当にする職員」で職員を選んでから実行してください。"))
            return
        results = applications_assign_bulk(applications=queryset, assignee=assignee, actor=request.user,
                                           request=request)
        self._report(request, results, _("担当を変更しました：%(receipts)s"))

    @admin.action(description=gettext_lazy("対応済みにする"), permissions=["process"])
    def mark_handled(self, request, queryset):
        results = applications_needs_action_clear_bulk(applications=queryset, actor=request.user, request=request)
        self._report(request, results, _("対応済みにしました：%(receipts)s"))

    @admin.action(description=gettext_lazy("状態を変更する"), permissions=["process"])
    def change_status(self, request, queryset):
        code = (request.POST.get("to_status") or "").strip()
        if code not in dict(status_codes_visible_to(request.user)):
            messages.error(request, _("「変更後の状態」で状態を選んでから実行してください。"))
            return
        results = applications_status_change_bulk(applications=queryset.select_related("procedure"),
                                                  status_code=code, actor=request.user, request=request)
        self._report(request, results, _("状態を変更しました：%(receipts)s"))

    # -- the detail page ---------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        application = self.get_object(request, unquote(object_id))
        if application is not None and request.method == "GET" and self.has_view_permission(request, application):
            audit_record(actor=request.user, action=audit_actions.APPLICATION_VIEW, obj=application,
                         details={"receipt_number": application.receipt_number}, request=request)
        return super().change_view(request, object_id, form_url, extra_context)

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is None or not policy.can(request.user, policy.PROCESS, obj):
            fields = [name for name in fields if name != "status_actions"]
        if obj is None or not StaffField.objects.filter(procedure_id=obj.procedure_id).exists():
            fields = [name for name in fields if name != "staff_fields_panel"]
        return fields

    def _may_process(self, obj) -> bool:
        viewer = getattr(obj, "_viewer", None)
        return viewer is not None and policy.can(viewer, policy.PROCESS, obj)

    @admin.display(description=gettext_lazy("担当"))
    def assignee_panel(self, obj):
        current = obj.assignee.get_username() if obj.assignee_id else _("（未割当）")
        if not self._may_process(obj):
            return current
        url = reverse("admin:procedures_application_assign", args=[obj.pk])
        staff = [user for user in staff_who_may_process(viewer=obj._viewer) if policy.can(user, policy.PROCESS, obj)]
        button = '<button type="submit" class="button" formaction="{}" formmethod="post" name="assign" value="{}">{}</button>'
        return format_html(
            '<div class="procedure-assign"><strong>{}</strong> <select name="assignee" aria-label="{}">{}</select> {} {} {}</div>',
            current,
            _("担当にする職員"),
            format_html_join("", '<option value="{}"{}>{}</option>', (
                (user.pk, " selected" if user.pk == obj.assignee_id else "", user.get_username()) for user in staff
            )),
            format_html(button, url, "selected", _("この職員を担当にする")),
            format_html(button, url, ASSIGNEE_ME, _("自分を担当にする")),
            format_html(button, url, ASSIGNEE_NONE, _("担当を外す")) if obj.assignee_id else "",
        )

    @admin.display(description=gettext_lazy("要対応"))
    def needs_action_panel(self, obj):
        if not obj.needs_action:
            return _("対応済み")
        if not self._may_process(obj):
            return _("要対応")
        url = reverse("admin:procedures_application_handled", args=[obj.pk])
        return format_html(
            '<strong>{}</strong> <button type="submit" class="button" formaction="{}" formmethod="post">{}</button>',
            _("要対応"), url, _("対応済みにする"),
        )

    @admin.display(description=gettext_lazy("状態"), ordering="status__order")
    def status_label(self, obj):
        return obj.status.label if obj.status_id else "—"

    @admin.display(description=gettext_lazy("状態の変更"))
    def status_actions(self, obj):
        return status_actions_html(obj)

    @admin.display(description=gettext_lazy("状態の履歴"))
    def status_history(self, obj):
        return status_history_html(obj)

    @admin.display(description=gettext_lazy("管理項目（職員のみ）"))
    def staff_fields_panel(self, obj):
        rows = staff_value_rows(obj)
        values = obj.staff_values if isinstance(obj.staff_values, dict) else {}
        if not self._may_process(obj):
            return format_html(
                '<table class="procedure-answers"><tbody>{}</tbody></table>',
                format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", (
                    (field.label, shown or "—") for field, shown in rows
                )),
            )
        url = reverse("admin:procedures_application_staff_fields", args=[obj.pk])
        return format_html(
            '<table class="procedure-answers"><tbody>{}</tbody></table>'
            '<p><button type="submit" class="button" formaction="{}" formmethod="post">{}</button></p>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", (
                (field.label, _staff_field_input(field, values.get(field.key))) for field, _shown in rows
            )),
            url,
            _("管理項目を保存する"),
        )

    @admin.display(description=gettext_lazy("同じ住民の他の申請"))
    def other_applications(self, obj):
        viewer = getattr(obj, "_viewer", None)
        if viewer is None:
            return "—"
        others = list(resident_other_applications(application=obj, viewer=viewer)[:50])
        if not others:
            return _("（ありません）")
        return format_html("<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a>　{}　{}　{}</li>', (
            (reverse("admin:procedures_application_change", args=[other.pk]), other.receipt_number,
             other.procedure.name, other.status.label if other.status_id else "—",
             timezone.localtime(other.submitted_at).strftime("%Y-%m-%d"))
            for other in others
        )))

    @admin.display(description=gettext_lazy("経過"))
    def timeline(self, obj):
        entries = application_timeline(obj)
        head = (_("日時"), _("出来事"), _("誰が"), _("内容"))
        return format_html(
            '<table class="procedure-timeline"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
            format_html_join("", "<th>{}</th>", ((item,) for item in head)),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
                (timezone.localtime(entry.time).strftime("%Y-%m-%d %H:%M"), entry.label, entry.actor, entry.text)
                for entry in entries
            )),
        )

    @admin.display(description=gettext_lazy("住民とのやりとり"))
    def correspondence_panel(self, obj):
        return correspondence_admin.correspondence_panel_html(obj, getattr(obj, "_viewer", None))

    @admin.display(description=gettext_lazy("印刷"))
    def print_link(self, obj):
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>',
                           reverse("admin:procedures_application_print", args=[obj.pk]), _("印刷用の画面を開く（別タブ）"))

    def get_urls(self):
        pages = [
            ("status/", self.status_view, "status"),
            ("reveal/", self.reveal_view, "reveal"),
            ("assign/", self.assign_view, "assign"),
            ("handled/", self.handled_view, "handled"),
            ("staff-fields/", self.staff_fields_view, "staff_fields"),
            ("print/", self.print_view, "print"),
            ("message/", functools.partial(correspondence_admin.message_view, self), "message"),
            ("correction/", functools.partial(correspondence_admin.correction_view, self), "correction"),
        ]
        urls = [
            path(f"<path:object_id>/{suffix}", self.admin_site.admin_view(view), name=f"procedures_application_{name}")
            for suffix, view, name in pages
        ]
        return urls + super().get_urls()

    def _posted_application(self, request, object_id, action: str):
        """The application of a POST-only page, after the policy's `action` (or None with the response to send)."""
        if request.method != "POST":
            return None, HttpResponseNotAllowed(["POST"])
        application = self.get_object(request, unquote(object_id))
        if application is None:
            raise Http404(_("指定された申請が見つかりません。"))
        if not policy.can(request.user, action, application):
            raise PermissionDenied
        return application, None

    def reveal_view(self, request, object_id):
        """POST reveal (step keys, or "__all__"): the answers with those sensitive values shown, this response only.

        Nothing is stored: the detail page (and any later GET) masks them again. Each reveal is audit
        logged with the step keys, never the values.
        """
        application, refused = self._posted_application(request, object_id, policy.REVEAL_SENSITIVE)
        if refused is not None:
            return refused
        change_url = reverse("admin:procedures_application_change", args=[application.pk])
        spec_data = version_spec_data(application.version)
        revealable = [key for key, _label in revealable_answers(spec_data, application.answers)]
        asked = set(request.POST.getlist("reveal"))
        keys = revealable if REVEAL_ALL in asked else [key for key in revealable if key in asked]
        if not keys:
            messages.error(request, _("表示できる伏せ字の回答がありません。"))
            return HttpResponseRedirect(change_url)
        audit_record(actor=request.user, action=audit_actions.APPLICATION_REVEAL, obj=application,
                     details={"receipt_number": application.receipt_number, "keys": keys}, request=request)
        rows = answer_rows(spec_data, application.answers, revealed=frozenset(keys),
                           image_url=lambda key: attachment_url(application.pk, key))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("機微情報の表示（%(receipt)s）") % {"receipt": application.receipt_number},
            "application": application,
            "change_url": change_url,
            "rows": rows,
            "revealed_labels": [label for key, label in revealable_answers(spec_data, application.answers)
                                if key in keys],
        }
        response = TemplateResponse(request, "admin/procedures/application/reveal.html", context)
        response["Cache-Control"] = "private, no-store"
        return response

    def status_view(self, request, object_id):
        """POST to_status (+ status_note): move the application along an allowed transition."""
        application, refused = self._posted_application(request, object_id, policy.PROCESS)
        if refused is not None:
            return refused
        change_url = reverse("admin:procedures_application_change", args=[application.pk])
        raw_status = (request.POST.get("to_status") or "").strip()
        note = (request.POST.get("status_note") or "").strip()
        if not (raw_status.isascii() and raw_status.isdigit()):
            messages.error(request, _("変更後の状態を選んでください。"))
            return HttpResponseRedirect(change_url)
        if len(note) > STATUS_NOTE_MAX:
            messages.error(request, _("メモは%(max)s文字以内にしてください。") % {"max": STATUS_NOTE_MAX})
            return HttpResponseRedirect(change_url)
        try:
            change = application_status_change_by_staff(
                application=application, to_status=int(raw_status), actor=request.user, note=note, request=request
            )
        except WorkflowError as error:
            messages.error(request, error.message)
        except InboxRefused as error:
            for message in error.messages:
                messages.error(request, message)
        else:
            text = _("状態を「%(to)s」に変更しました。") % {"to": change.to_status.label}
            if change.notified:
                text += _("住民に LINE でお知らせを送ります。")
            messages.success(request, text)
        return HttpResponseRedirect(change_url)

    def assign_view(self, request, object_id):
        """POST assign=me | none | selected (+ assignee: a user id): who handles the application."""
        application, refused = self._posted_application(request, object_id, policy.PROCESS)
        if refused is not None:
            return refused
        change_url = reverse("admin:procedures_application_change", args=[application.pk])
        choice = request.POST.get("assign")
        raw = (request.POST.get("assignee") or "").strip()
        if choice == ASSIGNEE_ME:
            assignee = request.user
        elif choice == ASSIGNEE_NONE:
            assignee = None
        elif choice == "selected" and raw.isascii() and raw.isdigit():
            assignee = get_user_model().objects.filter(pk=int(raw), is_active=True).first()
            if assignee is None:
                messages.error(request, _("選んだ職員が見つかりません。一覧から選び直してください。"))
                return HttpResponseRedirect(change_url)
        else:
            messages.error(request, _("担当にする職員を選んでください。"))
            return HttpResponseRedirect(change_url)
        try:
            changed = application_assign(application=application, assignee=assignee, actor=request.user,
                                         request=request)
        except InboxRefused as error:
            for message in error.messages:
                messages.error(request, message)
        else:
            if not changed:
                messages.info(request, _("担当は変わりませんでした。"))
            elif assignee is None:
                messages.success(request, _("担当を外しました。"))
            else:
                messages.success(request, _("%(name)s さんを担当にしました。") % {"name": assignee.get_username()})
        return HttpResponseRedirect(change_url)

    def handled_view(self, request, object_id):
        """POST: the application no longer needs action (対応済み)."""
        application, refused = self._posted_application(request, object_id, policy.PROCESS)
        if refused is not None:
            return refused
        if application_needs_action_clear(application=application, actor=request.user, request=request):
            messages.success(request, _("対応済みにしました。"))
        else:
            messages.info(request, _("この申請はすでに対応済みです。"))
        return HttpResponseRedirect(reverse("admin:procedures_application_change", args=[application.pk]))

    def staff_fields_view(self, request, object_id):
        """POST sf-<key> for each 管理項目: their new values (checked per kind; nothing saved on any problem)."""
        application, refused = self._posted_application(request, object_id, policy.PROCESS)
        if refused is not None:
            return refused
        change_url = reverse("admin:procedures_application_change", args=[application.pk])
        keys = StaffField.objects.filter(procedure_id=application.procedure_id).values_list("key", flat=True)
        values = {key: request.POST[f"sf-{key}"] for key in keys if f"sf-{key}" in request.POST}
        try:
            changed = application_staff_values_update(application=application, values=values, actor=request.user,
                                                      request=request)
        except InboxRefused as error:
            messages.error(request, _("管理項目は保存していません。次の点を直してください。"))
            for message in error.messages:
                messages.error(request, message)
        else:
            if changed:
                messages.success(request, _("管理項目を保存しました。"))
            else:
                messages.info(request, _("管理項目に変更はありませんでした。"))
        return HttpResponseRedirect(change_url)

    def print_view(self, request, object_id):
        """GET: the application on one clean A4 page (sensitive answers masked); each print is recorded."""
        application = self.get_object(request, unquote(object_id))
        if application is None:
            raise Http404(_("指定された申請が見つかりません。"))
        if not policy.can(request.user, policy.VIEW, application):
            raise PermissionDenied
        audit_record(actor=request.user, action=audit_actions.APPLICATION_PRINT, obj=application,
                     details={"receipt_number": application.receipt_number}, request=request)
        spec_data = version_spec_data(application.version)
        context = {
            "title": _("申請（%(receipt)s）") % {"receipt": application.receipt_number},
            "application": application,
            "status": application.status.label if application.status_id else "—",
            "assignee": application.assignee.get_username() if application.assignee_id else _("（未割当）"),
            "answers": answer_rows(spec_data, application.answers),
            "computed": computed_rows(application),
            "staff_values": [(field.label, shown) for field, shown in staff_value_rows(application)],
            "status_history": status_history_html(application),
            "printed_at": timezone.localtime(),
            "printed_by": request.user.get_username(),
        }
        response = TemplateResponse(request, "admin/procedures/application/print.html", context)
        response["Cache-Control"] = "private, no-store"
        return response

    @admin.display(description=gettext_lazy("回答"))
    def answers_table(self, obj):
        spec_data = version_spec_data(obj.version)
        viewer = getattr(obj, "_viewer", None)
        may_view = viewer is not None and policy.can(viewer, policy.VIEW, obj)
        rows = answer_rows(spec_data, obj.answers,
                           image_url=(lambda key: attachment_url(obj.pk, key)) if may_view else None)
        if not rows:
            return _("（回答はありません）")
        table = format_html(
            '<table class="procedure-answers"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )
        keys = revealable_answers(spec_data, obj.answers)
        if keys and viewer is not None and policy.can(viewer, policy.REVEAL_SENSITIVE, obj):
            table = format_html("{}{}", table, reveal_buttons_html(obj, keys))
        return table

    @admin.display(description=gettext_lazy("計算項目"))
    def computed_table(self, obj):
        rows = computed_rows(obj)
        if not rows:
            return "—"
        return format_html(
            '<table class="procedure-answers"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
