"""Staff pages of an application for messages with the resident and correction requests (修正依頼).

    /admin/procedures/application/<id>/message/      the messages, and a form to write one
    /admin/procedures/application/<id>/correction/   the correction requests, a form to ask for one, cancel

Both pages are ApplicationAdmin's (its get_urls), so ScopedAdminMixin looks the application up in
the user's scope and requires the policy's "process" for them (scope_object_views). Writes go
through procedures/correspondence.py; these views only read the form and show what happened.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from procedures.correspondence import (
    CorrespondenceRefused,
    application_message_send,
    correctable_steps,
    correction_cancel,
    correction_request_create,
    correction_return_statuses,
)
from procedures.models import (
    APPLICATION_MESSAGE_MAX,
    CORRECTION_REASON_MAX,
    Application,
    ApplicationMessage,
    ApplicationRevision,
    CorrectionRequest,
)
from procedures.selectors import procedure_spec_get, version_spec_data
from procedures.spec import SpecError
from staff import policy

PERSONAL_DATA_REMINDER = gettext_lazy(
    "LINE で届く文です。氏名・住所・電話番号・回答の内容などの個人情報は書かないでください"
    "（申請の回答と同じ内容が含まれていると送れません）。詳しいことは電話や窓口でお伝えください。"
)


class MessageForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("メッセージ"),
        max_length=APPLICATION_MESSAGE_MAX,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text=PERSONAL_DATA_REMINDER,
        error_messages={
            "required": gettext_lazy("メッセージを入力してください。"),
            "max_length": gettext_lazy("メッセージは%(limit_value)s文字以内にしてください（現在%(show_value)s文字）。"),
        },
    )
    client_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=40)


class CorrectionForm(forms.Form):
    keys = forms.MultipleChoiceField(
        label=gettext_lazy("修正してもらう項目"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "required": gettext_lazy("修正してもらう項目を1つ以上選んでください。"),
            "invalid_choice": gettext_lazy("「%(value)s」はこの申請の質問にありません。一覧から選んでください。"),
        },
    )
    reason = forms.CharField(
        label=gettext_lazy("修正をお願いする理由"),
        max_length=CORRECTION_REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=PERSONAL_DATA_REMINDER,
        error_messages={
            "required": gettext_lazy("修正をお願いする理由を入力してください（住民に LINE で届きます）。"),
            "max_length": gettext_lazy("理由は%(limit_value)s文字以内にしてください（現在%(show_value)s文字）。"),
        },
    )
    return_status = forms.TypedChoiceField(
        label=gettext_lazy("再提出後の状態"),
        coerce=int,
        error_messages={"required": gettext_lazy("再提出後の状態を選んでください。"),
                        "invalid_choice": gettext_lazy("再提出後の状態を一覧から選んでください。")},
    )

    def __init__(self, *args, application: Application, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["keys"].choices = correctable_steps(application)
        statuses = correction_return_statuses(application)
        self.fields["return_status"].choices = [(status.pk, status.label) for status in statuses]
        if statuses and not self.is_bound:
            self.initial.setdefault("return_status", statuses[0].pk)


def _application(model_admin, request, object_id) -> Application:
    application = model_admin.get_object(request, unquote(object_id))
    if application is None:
        raise Http404(_("指定された申請が見つかりません。"))
    if not policy.can(request.user, policy.PROCESS, application):
        raise PermissionDenied
    return application


def _page(model_admin, request, application, template: str, title: str, **context) -> TemplateResponse:
    return TemplateResponse(request, template, {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title % {"receipt": application.receipt_number},
        "application": application,
        "change_url": reverse("admin:procedures_application_change", args=[application.pk]),
        **context,
    })


def _refused(form: forms.Form, error: CorrespondenceRefused) -> None:
    for text in error.messages:
        form.add_error(None, text)


def message_view(model_admin, request, object_id):
    """GET: the messages about the application and the form; POST: send the message."""
    application = _application(model_admin, request, object_id)
    form = MessageForm(request.POST or None, initial={"client_key": uuid.uuid4().hex})
    if request.method == "POST" and form.is_valid():
        try:
            sent = application_message_send(
                application=application, text=form.cleaned_data["text"], sender=request.user,
                client_key=form.cleaned_data["client_key"], request=request,
            )
        except CorrespondenceRefused as error:
            _refused(form, error)
        else:
            if sent.delivery == ApplicationMessage.Delivery.QUEUED:
                messages.success(request, _("メッセージを LINE で送ります。"))
            else:
                messages.warning(request, _("メッセージを記録しましたが、この住民には LINE で届けられません（ブロック中、テスト申請など）。"))
            return HttpResponseRedirect(reverse("admin:procedures_application_message", args=[application.pk]))
    history = ApplicationMessage.objects.filter(application=application).select_related("sender")
    return _page(model_admin, request, application, "admin/procedures/application/message.html",
                 _("住民とのメッセージ（%(receipt)s）"), form=form, history=history)


def correction_view(model_admin, request, object_id):
    """GET: the correction requests and the form; POST: ask for a correction, or cancel an open one."""
    application = _application(model_admin, request, object_id)
    here = reverse("admin:procedures_application_correction", args=[application.pk])
    if request.method == "POST" and request.POST.get("cancel"):
        raw = request.POST["cancel"]
        correction = CorrectionRequest.objects.filter(
            application=application, pk=int(raw) if raw.isascii() and raw.isdigit() else 0
        ).first()
        if correction is None:
            messages.error(request, _("取り消す修正依頼が見つかりません。"))
        else:
            try:
                correction_cancel(correction=correction, actor=request.user, request=request)
            except CorrespondenceRefused as error:
                for text in error.messages:
                    messages.error(request, text)
            else:
                messages.success(request, _("修正依頼を取り消しました。申請の状態は変わっていません。必要なら状態を変更してください。"))
        return HttpResponseRedirect(here)
    form = CorrectionForm(request.POST or None, application=application)
    if request.method == "POST" and form.is_valid():
        try:
            correction = correction_request_create(
                application=application, keys=form.cleaned_data["keys"], reason=form.cleaned_data["reason"],
                return_status=form.cleaned_data["return_status"], actor=request.user, request=request,
            )
        except CorrespondenceRefused as error:
            _refused(form, error)
        else:
            if correction.notified:
                messages.success(request, _("修正を依頼しました。住民に LINE でお知らせします。"))
            else:
                messages.warning(request, _("修正依頼を記録しましたが、この住民には LINE で届けられません（ブロック中、テスト申請など）。"))
            return HttpResponseRedirect(here)
    corrections = CorrectionRequest.objects.filter(application=application).select_related(
        "return_status", "requested_by"
    ).order_by("-created_at", "-id")
    labels = dict(correctable_steps(application))
    rows = [(correction, "、".join(labels.get(key, key) for key in correction.keys)) for correction in corrections]
    return _page(model_admin, request, application, "admin/procedures/application/correction.html",
                 _("修正依頼（%(receipt)s）"), form=form, corrections=rows)


# --------------------------------------------------------------------------
# The panel on the detail page
# --------------------------------------------------------------------------


def revision_rows(application: Application, revision: ApplicationRevision) -> list[tuple[str, str, str]]:
    """(question, before, after) of every answer the resubmission changed; sensitive ones masked."""
    # Imported here: procedures.admin imports this module for its pages.
    from procedures.admin import answer_rows

    try:
        steps = [step for step in procedure_spec_get(application.version).steps if step.is_input]
    except SpecError:
        return []
    spec_data = version_spec_data(application.version)
    old, new = revision.old_answers or {}, revision.new_answers or {}
    # answer_rows has one row per question of the version, in step order (then unknown keys).
    before, after = answer_rows(spec_data, old), answer_rows(spec_data, new)
    return [
        (label, old_value, new_value)
        for step, (label, old_value), (_label, new_value) in zip(steps, before, after, strict=False)
        if old.get(step.key) != new.get(step.key)
    ]


def correspondence_panel_html(application: Application, viewer) -> str:
    """Links to the two pages (for those who may process), the open request, and old vs new answers."""
    parts = []
    if viewer is not None and policy.can(viewer, policy.PROCESS, application):
        links = (
            (reverse("admin:procedures_application_message", args=[application.pk]), _("住民にメッセージを送る")),
            (reverse("admin:procedures_application_correction", args=[application.pk]), _("修正を依頼する")),
        )
        parts.append(format_html("<p>{}</p>", format_html_join(" ", '<a class="button" href="{}">{}</a>', links)))
    received = ApplicationMessage.objects.filter(
        application=application, direction=ApplicationMessage.Direction.FROM_RESIDENT
    ).count()
    if received:
        parts.append(format_html("<p>{}</p>", _("住民からのメッセージ：%(count)s件（経過に表示しています）") % {"count": received}))
    open_request = CorrectionRequest.objects.filter(application=application, state=CorrectionRequest.State.OPEN).first()
    if open_request is not None:
        parts.append(format_html("<p>{}</p>", _("修正依頼中です（%(date)s に依頼）。住民の再提出を待っています。")
                                 % {"date": f"{timezone.localtime(open_request.created_at):%Y-%m-%d}"}))
    for revision in ApplicationRevision.objects.filter(application=application).order_by("-created_at", "-id"):
        rows = revision_rows(application, revision)
        parts.append(format_html(
            '<p>{}</p><table class="procedure-answers"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            _("%(date)s の再提出で変わった回答") % {"date": f"{timezone.localtime(revision.created_at):%Y-%m-%d %H:%M}"},
            _("質問"), _("修正前"), _("修正後"),
            format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", rows)
            if rows else format_html('<tr><td colspan="3">{}</td></tr>', _("（回答は変わっていません）")),
        ))
    if not parts:
        return "—"
    return format_html_join("", "{}", ((part,) for part in parts))
