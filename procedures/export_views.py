"""The staff page for CSV exports of applications: /procedures/exports/.

GET (or POST) with `procedure`, optional `status`, `date_from`, `date_to` (JST dates, inclusive)
and `encoding` (utf-8 | cp932):
- `download=1` streams the CSV (StreamingHttpResponse; recorded in the audit log first);
- `check=1` shows, on the page, which receipt numbers and columns hold characters that CP932
  cannot encode (computed by streaming the same rows, nothing is downloaded or stored);
- otherwise the form is shown.

Only staff with the export permission on some procedure reach the page (403 otherwise); a
procedure outside the user's export scope is 404, the same as one that does not exist.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from procedures import exports
from procedures.models import ApplicationStatus
from staff import policy


class ExportForm(forms.Form):
    procedure = forms.ModelChoiceField(queryset=None, label=gettext_lazy("手続き"))
    status = forms.ModelChoiceField(
        queryset=ApplicationStatus.objects.none(), required=False, label=gettext_lazy("状態"),
        empty_label=gettext_lazy("すべて"),
    )
    date_from = forms.DateField(required=False, label=gettext_lazy("申請日（から）"), widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label=gettext_lazy("申請日（まで）"), widget=forms.DateInput(attrs={"type": "date"}))
    encoding = forms.ChoiceField(
        choices=[
            (exports.UTF8, gettext_lazy("UTF-8（BOM 付き・Excel で開けます）")),
            (exports.CP932, gettext_lazy("Shift_JIS（CP932）")),
        ],
        initial=exports.UTF8,
        required=False,
        label=gettext_lazy("文字コード"),
    )

    def __init__(self, *args, procedures, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["procedure"].queryset = procedures
        self.fields["status"].queryset = ApplicationStatus.objects.filter(procedure__in=procedures).select_related(
            "procedure"
        ).order_by("procedure__name", "order", "id")
        self.fields["status"].label_from_instance = lambda status: f"{status.procedure.name}：{status.label}"

    def clean(self):
        data = super().clean()
        procedure, status = data.get("procedure"), data.get("status")
        if procedure is not None and status is not None and status.procedure_id != procedure.pk:
            self.add_error("status", _("この手続きの状態を選んでください。"))
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("終わりの日付は始まりの日付より後にしてください。"))
        return data

    def filters(self) -> exports.ExportFilters:
        data = self.cleaned_data
        return exports.ExportFilters(
            procedure=data["procedure"],
            status=data.get("status"),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            encoding=data.get("encoding") or exports.UTF8,
        )


@staff_member_required
def export_page(request):
    user = request.user
    procedures = policy.procedures_visible_to(user, action=policy.EXPORT).order_by("name")
    if not procedures.exists():
        raise PermissionDenied
    data = request.POST if request.method == "POST" else request.GET
    requested = data.get("procedure")
    if requested:
        # Another department's procedure (or a guessed id) is not found, rather than a form error.
        if not str(requested).isdigit() or not procedures.filter(pk=int(requested)).exists():
            raise Http404
    form = ExportForm(data if requested else None, procedures=procedures)
    report = None
    if form.is_bound and form.is_valid():
        filters = form.filters()
        if data.get("download"):
            return _download(request, filters)
        if data.get("check"):
            report = exports.unencodable_cells(user=user, filters=filters, encoding=exports.CP932, request=request)
    context = {
        **admin.site.each_context(request),
        "title": _("申請の書き出し（CSV）"),
        "form": form,
        "report": report,
        "check_limit": exports.CHECK_LIST_LIMIT,
    }
    return render(request, "procedures/export.html", context)


def _download(request, filters: exports.ExportFilters) -> StreamingHttpResponse:
    chunks = exports.application_export(user=request.user, filters=filters, request=request)
    charset = "shift_jis" if filters.encoding == exports.CP932 else "utf-8"
    response = StreamingHttpResponse(chunks, content_type=f"text/csv; charset={charset}")
    name = f"{filters.procedure.receipt_prefix.lower()}-applications-{timezone.localtime():%Y%m%d-%H%M%S}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response
