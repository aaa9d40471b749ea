"""The audit log in the admin: read-only, searchable, filterable, exportable as CSV (auditors, system administrators)."""

from django.contrib import admin
from django.contrib.admin.filters import DateFieldListFilter
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit import actions
from audit.models import AuditEntry
from audit.services import MAX_ACTOR_DISPLAY, audit_export
from staff import policy
from staff.mixins import ScopedAdminMixin


class ActionFilter(admin.SimpleListFilter):
    title = gettext_lazy("操作")
    parameter_name = "action"

    def lookups(self, request, model_admin):
        codes = model_admin.get_queryset(request).order_by().values_list("action", flat=True).distinct()
        return sorted(((code, actions.label(code)) for code in codes), key=lambda item: item[1])

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action=self.value())
        return queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "actor_display", "action_label", "object_type", "object_id", "department", "ip"]
    list_filter = [ActionFilter, "actor", ("created_at", DateFieldListFilter), "department"]
    list_select_related = ["department"]
    search_fields = ["actor_display", "action", "object_type", "=object_id", "ip"]
    date_hierarchy = "created_at"
    fields = [
        "created_at", "actor", "actor_display", "action_label", "object_type", "object_id", "department",
        "details", "ip", "user_agent",
    ]
    readonly_fields = fields
    actions = None
    change_list_template = "admin/audit/auditentry/change_list.html"

    @admin.display(description=gettext_lazy("操作"), ordering="action")
    def action_label(self, obj):
        return actions.label(obj.action)

    # Append-only: the policy refuses these to everyone; said again here so it reads plainly.
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="audit_auditentry_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra = dict(extra_context or {})
        if policy.can(request.user, policy.EXPORT, AuditEntry):
            query = request.GET.urlencode()
            extra["export_url"] = reverse("admin:audit_auditentry_export") + (f"?{query}" if query else "")
        return super().changelist_view(request, extra)

    def export_view(self, request):
        """The entries of the list as it is filtered now, as CSV (UTF-8 with BOM); the export is itself logged."""
        if request.method != "GET":
            raise PermissionDenied
        if not policy.can(request.user, policy.EXPORT, AuditEntry):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest(_("絞り込みの指定が正しくありません。"))
        entries = policy.scope(request.user, policy.EXPORT, changelist.get_queryset(request))
        filters = {key: value[:MAX_ACTOR_DISPLAY] for key, value in request.GET.items()}
        rows = audit_export(actor=request.user, entries=entries, filters=filters, request=request)
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        name = f"audit-log-{timezone.localtime():%Y%m%d-%H%M%S}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
