"""The admin of push-and-confirm campaigns: edit, import the CSV, send, results and their export.

Registered from broadcasts/admin.py. Pages are thin: each calls one service of broadcasts/campaigns.py
(which checks staff.policy again) and shows its Japanese problems.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from broadcasts import campaigns
from broadcasts.campaign_selectors import RESULT_HEADERS, campaign_counts, campaign_recipients, result_row
from broadcasts.models import Campaign
from staff import policy
from staff.mixins import ScopedAdminMixin

RESULTS_LISTED = 500  # recipients shown on the change page; the export has them all
_CONTENT_FIELDS = (
    "name",
    "department",
    "procedure",
    "fixed_answers",
    "question",
    "yes_label",
    "no_label",
    "deadline",
    "reminder_after_days",
    "reminder_text",
    "match_by",
    "match_attribute",
    "key_column",
)


class RecipientsImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("対象者の CSV"),
        help_text=gettext_lazy("1 行目は見出し。UTF-8（BOM 付き可）か Shift_JIS（CP932）。"),
    )


@admin.register(Campaign)
class CampaignAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "department", "procedure", "status", "deadline")
    list_filter = ("status",)
    search_fields = ("name",)
    readonly_fields = ("status", "sent_at", "results")
    change_form_template = "admin/broadcasts/campaign/change_form.html"
    scope_object_views = {"import": policy.CHANGE, "send": policy.CHANGE, "export": policy.EXPORT}

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": ("name", "department", "procedure", "fixed_answers")}),
            (
                _("住民に送る質問"),
                {"fields": ("question", "yes_label", "no_label", "deadline", "reminder_after_days", "reminder_text")},
            ),
            (_("対象者の照合"), {"fields": ("match_by", "match_attribute", "key_column")}),
        ]
        if obj is not None:
            fieldsets.append((_("状況と結果"), {"fields": ("status", "sent_at", "results")}))
        return fieldsets

    def has_delete_permission(self, request, obj=None):
        # Once sent, its recipients' answers and the applications they made are the record.
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            return (*_CONTENT_FIELDS, *self.readonly_fields)
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description=gettext_lazy("結果"))
    def results(self, obj):
        counts = campaign_counts(campaign=obj)
        rows = [result_row(recipient) for recipient in campaign_recipients(campaign=obj)[:RESULTS_LISTED]]
        return render_to_string(
            "admin/broadcasts/campaign/results.html",
            {"counts": counts, "rows": rows, "headers": RESULT_HEADERS, "more": counts.total - len(rows)},
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if campaign is not None:
            allowed = policy.can(request.user, policy.CHANGE, campaign)
            draft = campaign.status == Campaign.Status.DRAFT
            sendable = campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SENDING, Campaign.Status.OPEN)
            extra.update(
                {
                    "import_url": self._url("import", campaign) if allowed and draft else "",
                    "send_url": self._url("send", campaign) if allowed and sendable else "",
                    "export_url": self._url("export", campaign)
                    if policy.can(request.user, policy.EXPORT, campaign)
                    else "",
                }
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def _url(self, name: str, campaign: Campaign) -> str:
        return reverse(f"admin:broadcasts_campaign_{name}", args=[campaign.pk])

    def get_urls(self):
        pages = [
            ("import/", self.import_view, "import"),
            ("send/", self.send_view, "send"),
            ("export/", self.export_view, "export"),
        ]
        return [
            path(f"<path:object_id>/{suffix}", self.admin_site.admin_view(view), name=f"broadcasts_campaign_{name}")
            for suffix, view, name in pages
        ] + super().get_urls()

    # -- pages (ScopedAdminMixin has checked the object and the policy action first) ---------

    def import_view(self, request, object_id):
        campaign = self.get_object(request, object_id)
        change_url = reverse("admin:broadcasts_campaign_change", args=[campaign.pk])
        problems: list[str] = []
        form = RecipientsImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                # Never read more than the cap (+1 byte to know it was exceeded).
                result = campaigns.recipients_import(
                    campaign=campaign,
                    raw=upload.read(campaigns.CSV_MAX_BYTES + 1),
                    actor=request.user,
                    request=request,
                )
            except campaigns.CampaignRefused as error:
                problems = list(error.messages)
            else:
                messages.success(
                    request,
                    _("%(rows)s 行を取り込みました（住民と照合できたのは %(matched)s 行）。")
                    % {"rows": result.rows, "matched": result.matched},
                )
                return HttpResponseRedirect(change_url)
        return TemplateResponse(
            request,
            "admin/broadcasts/campaign/import.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": _("対象者の CSV を取り込む（%(name)s）") % {"name": campaign.name},
                "campaign": campaign,
                "change_url": change_url,
                "form": form,
                "problems": problems,
                "max_bytes": campaigns.CSV_MAX_BYTES,
                "max_rows": campaigns.CSV_MAX_ROWS,
            },
        )

    def send_view(self, request, object_id):
        campaign = self.get_object(request, object_id)
        change_url = reverse("admin:broadcasts_campaign_change", args=[campaign.pk])
        if request.method != "POST":
            return HttpResponseRedirect(change_url)
        try:
            waiting = campaigns.campaign_send_start(campaign=campaign, actor=request.user, request=request)
        except campaigns.CampaignRefused as error:
            for text in error.messages:
                messages.error(request, text)
        else:
            messages.success(
                request,
                _("送信を始めました（未送信の対象者 %(waiting)s 人）。送信済みの住民には二度と送りません。")
                % {"waiting": waiting},
            )
        return HttpResponseRedirect(change_url)

    def export_view(self, request, object_id):
        campaign = self.get_object(request, object_id)
        try:
            content = campaigns.campaign_results_export(campaign=campaign, actor=request.user, request=request)
        except campaigns.CampaignRefused as error:
            for text in error.messages:
                messages.error(request, text)
            return HttpResponseRedirect(reverse("admin:broadcasts_campaign_change", args=[campaign.pk]))
        response = HttpResponse(content, content_type="text/csv; charset=utf-8")
        stamp = f"{timezone.localtime():%Y%m%d-%H%M}"
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-results-{stamp}.csv"'
        return response
