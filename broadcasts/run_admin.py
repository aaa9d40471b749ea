"""The progress of broadcast runs: read-only pages with a live progress bar.

The change page polls `<id>/progress/` (JSON from broadcasts.selectors.run_progress: counts and
chunks, never recipients nor texts) with a few lines of JavaScript until the run has finished.
Registered here and imported by broadcasts/admin.py; scoped by staff/policy.py like every admin.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import Http404, JsonResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _

from broadcasts import selectors
from broadcasts.models import BroadcastRun
from staff.mixins import ScopedAdminMixin

RUN_FIELDS = (
    "broadcast",
    "scheduled_for",
    "status",
    "refused_reason",
    "recipients_total",
    "delivered",
    "failed",
    "skipped_blocked",
    "skipped_opted_out",
    "created_at",
    "started_at",
    "finished_at",
)


@admin.register(BroadcastRun)
class BroadcastRunAdmin(ScopedAdminMixin, admin.ModelAdmin):
    change_form_template = "admin/broadcasts/broadcastrun/change_form.html"
    list_display = (
        "broadcast",
        "scheduled_for",
        "status",
        "recipients_total",
        "delivered",
        "failed",
        "skipped_blocked",
        "skipped_opted_out",
    )
    list_filter = ("status", "broadcast__department")
    list_select_related = ("broadcast",)
    date_hierarchy = "scheduled_for"
    fields = RUN_FIELDS
    readonly_fields = RUN_FIELDS

    class Media:
        js = ("broadcasts/run_progress.js",)

    # Runs are made by the scheduler and the sender; staff only watch them.
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        progress = path(
            "<path:object_id>/progress/",
            self.admin_site.admin_view(self.progress_view),
            name="broadcasts_broadcastrun_progress",
        )
        return [progress, *super().get_urls()]

    def _run(self, request, object_id) -> BroadcastRun:
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404(_("指定された対象が見つかりません。"))
        return run

    def progress_view(self, request, object_id):
        return JsonResponse(selectors.run_progress(self._run(request, object_id)))  # never cached (admin_view)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if run is not None:  # otherwise Django's own page answers (not found)
            extra_context["progress"] = selectors.run_progress(run)
            extra_context["progress_url"] = reverse("admin:broadcasts_broadcastrun_progress", args=[run.pk])
        return super().change_view(request, object_id, form_url, extra_context)
