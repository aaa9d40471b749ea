"""Webhook endpoints per procedure and their delivery log, under staff/policy.py."""

from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from integrations.models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint
from integrations.services import delivery_resend, endpoint_save
from staff import policy
from staff.mixins import ScopedAdminMixin


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "procedure", "url", "is_active", "on_submitted", "on_status_changed", "include_sensitive"]
    list_filter = ["is_active", "procedure"]
    fields = ["procedure", "name", "url", "secret", "is_active", "on_submitted", "on_status_changed",
              "include_sensitive"]

    def scope_queryset(self, request, queryset):
        # The secret is on the page: only those who may change the procedure see an endpoint at all.
        return policy.scope(request.user, policy.CHANGE, queryset)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "url":
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        endpoint_save(endpoint=obj, actor=request.user, changed=list(form.changed_data))


class DeliveryAttemptInline(ScopedAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "status_code", "error", "duration_ms"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def scope_queryset(self, request, queryset):
        return queryset  # the parent delivery page is already scoped

    def _policy_allows(self, request, permission, obj=None):
        return permission == "view" and policy.can(request.user, policy.VIEW, obj or WebhookDelivery)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["delivery_id", "event", "receipt_number", "endpoint", "status", "attempts", "next_attempt_at",
                    "last_error", "created_at"]
    list_filter = ["status", "event"]
    list_select_related = ["endpoint", "application"]
    search_fields = ["application__receipt_number", "delivery_id"]
    # Never the payload: it holds residents' answers, and the log is open to the procedure's viewers.
    fields = ["delivery_id", "event", "receipt_number", "endpoint", "status", "attempts", "next_attempt_at",
              "last_error", "delivered_at", "created_at"]
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["resend"]
    scope_actions = {"resend": policy.CHANGE}

    @admin.display(description=gettext_lazy("受付番号"), ordering="application__receipt_number")
    def receipt_number(self, obj):
        return obj.application.receipt_number

    def has_change_permission(self, request, obj=None):
        return False  # the log is read-only; resending is an action

    @admin.action(description=gettext_lazy("選んだ送信をやり直す（同じ配信 ID）"), permissions=["resend"])
    def resend(self, request, queryset):
        sent = sum(delivery_resend(delivery=delivery, actor=request.user) for delivery in queryset)
        skipped = queryset.count() - sent
        messages.success(request, _("%(count)s件を送信待ちに戻しました。") % {"count": sent})
        if skipped:
            messages.warning(request, _("%(count)s件は送信待ちか送信中のため、そのままにしました。") % {"count": skipped})

    def has_resend_permission(self, request):
        return policy.can(request.user, policy.CHANGE, WebhookDelivery)
