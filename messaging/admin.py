import json

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from messaging import services
from messaging.line import parse
from messaging.models import InboxEvent, LineChannelSettings, LineFollowEvent, LineUser, OutboxMessage


def _short(text: str, length: int = 80) -> str:
    text = text or ""
    return text if len(text) <= length else text[: length - 1] + "…"


def _pretty_json(value) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; max-height: 40em; overflow: auto;">{}</pre>',
        json.dumps(value, ensure_ascii=False, indent=2),
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the pipeline: staff look and use actions, they do not edit."""

    def has_add_permission(self, request):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + list(self.readonly_fields)


@admin.register(InboxEvent)
class InboxEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "line_timestamp",
        "event_type",
        "message_type",
        "line_user_id",
        "status",
        "attempts",
        "error_summary",
        "ignored_reason",
    ]
    list_filter = ["status", "event_type", "source_type", "is_redelivery"]
    search_fields = ["webhook_event_id", "line_user_id"]
    date_hierarchy = "received_at"
    readonly_fields = ["payload_pretty"]
    exclude = ["payload"]
    actions = ["retry_events"]

    @admin.display(description=_("エラー"))
    def error_summary(self, obj):
        return _short(obj.last_error)

    @admin.display(description=_("イベント（住民が送った内容は表示しません）"))
    def payload_pretty(self, obj):
        # Never what the resident typed, picked or sent, even while the event still holds it.
        return _pretty_json(parse.redact(obj.payload))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "payload"] + ["payload_pretty"]

    @admin.action(description=_("選択した再試行中のイベントをすぐに再処理する"), permissions=["change"])
    def retry_events(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        count = services.inbox_retry(ids=ids)
        if count:
            self.message_user(
                request,
                ngettext(
                    "%(count)d 件を再処理の待ち行列に戻しました。",
                    "%(count)d 件を再処理の待ち行列に戻しました。",
                    count,
                )
                % {"count": count},
                messages.SUCCESS,
            )
        if count < len(ids):
            self.message_user(
                request,
                _(
                    "%(skipped)d 件は再処理できません。再処理できるのは、失敗して再試行中（未処理）のイベントだけです。"
                    "保留になったイベントは、住民が送った内容を消去済みです。"
                )
                % {"skipped": len(ids) - count},
                messages.WARNING,
            )


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "line_user_id",
        "kind",
        "status",
        "sent_via",
        "attempts",
        "next_attempt_at",
        "error_summary",
    ]
    list_filter = ["status", "kind", "sent_via"]
    search_fields = ["line_user_id", "line_request_id", "retry_key"]
    date_hierarchy = "created_at"
    exclude = ["payload", "claim_token"]
    actions = ["retry_messages", "resend_unknown_by_push"]

    @admin.display(description=_("エラー"))
    def error_summary(self, obj):
        return _short(obj.last_error)

    @admin.display(description=_("メッセージ"))
    def payload_pretty(self, obj):
        return _pretty_json(obj.payload)

    def get_readonly_fields(self, request, obj=None):
        hidden = {"payload", "claim_token"}
        return [f.name for f in self.model._meta.fields if f.name not in hidden] + ["retry_key", "payload_pretty"]

    @admin.action(description=_("選択した失敗メッセージをプッシュで再送する"), permissions=["change"])
    def retry_messages(self, request, queryset):
        count = services.outbox_retry(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request,
            ngettext("%(count)d 件を再送の待ち行列に戻しました。", "%(count)d 件を再送の待ち行列に戻しました。", count)
            % {"count": count},
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(
        description=_("プッシュで再送（送信結果不明のメッセージ：住民に届いていないことを確かめてから）"),
        permissions=["change"],
    )
    def resend_unknown_by_push(self, request, queryset):
        count = services.outbox_resend_unknown(ids=list(queryset.values_list("pk", flat=True)))
        if count:
            message = ngettext(
                "%(count)d 件をプッシュで再送します。", "%(count)d 件をプッシュで再送します。", count
            ) % {"count": count}
        else:
            message = _("再送したメッセージはありません（送信結果不明のメッセージだけが対象です）。")
        self.message_user(request, message, messages.SUCCESS if count else messages.WARNING)


class LineFollowEventInline(admin.TabularInline):
    model = LineFollowEvent
    extra = 0
    can_delete = False
    fields = ["kind", "is_unblocked", "occurred_at", "webhook_event_id"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LineUser)
class LineUserAdmin(ReadOnlyAdmin):
    list_display = ["line_user_id", "resident", "is_following", "followed_at", "blocked_at", "updated_at"]
    list_filter = ["is_following"]
    search_fields = ["line_user_id"]
    inlines = [LineFollowEventInline]


@admin.register(LineChannelSettings)
class LineChannelSettingsAdmin(admin.ModelAdmin):
    fields = ["greeting_text", "updated_at"]
    readonly_fields = ["updated_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # A single row: go straight to it.
        settings = LineChannelSettings.load()
        return HttpResponseRedirect(reverse("admin:messaging_linechannelsettings_change", args=[settings.pk]))
