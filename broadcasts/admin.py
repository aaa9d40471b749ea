"""The broadcast admin: settings, the message composer (one form per message kind), a chat preview,
and the buttons that submit, approve and cancel (each through broadcasts/services.py)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from broadcasts import (  # noqa: F401 - run_admin registers the runs' admin
    campaign_admin,  # noqa: F401 - registers the campaigns' admin
    compose,
    run_admin,
    services,
)
from broadcasts.forms import EDITORS, BroadcastForm, message_editor
from broadcasts.models import BROADCAST_MAX_MESSAGES, RETURNED_REASON_MAX, Broadcast, BroadcastRun
from broadcasts.preview import preview_items
from broadcasts.richmenu import admin as richmenu_admin  # noqa: F401 - registers the rich menus' admin
from residents.models import Category
from staff import policy
from staff.mixins import ScopedAdminMixin


def _posted_datetime(request, name: str):
    """A date-time the page posted back (None when missing or unreadable)."""
    try:
        return parse_datetime(request.POST.get(name, ""))
    except ValueError:
        return None


def _change_url(broadcast_id: int) -> str:
    return reverse("admin:broadcasts_broadcast_change", args=[broadcast_id])


@admin.register(Broadcast)
class BroadcastAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = BroadcastForm
    change_form_template = "admin/broadcasts/broadcast/change_form.html"
    list_display = ("title", "department", "status", "audience", "is_emergency", "recurrence", "next_run_at")
    list_filter = ("status", "audience", "is_emergency", "recurrence", "department")
    search_fields = ("title",)
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("title", "department")}),
        (_("配信先"), {"fields": ("audience", "segment", "category", "is_emergency", "emergency_confirmed")}),
        (
            _("配信日時"),
            {
                "fields": (
                    "send_at",
                    "recurrence",
                    "recurrence_weekdays",
                    "recurrence_until",
                    "excluded_dates",
                    "exclude_year_end",
                    "exclude_holidays",
                )
            },
        ),
        (_("承認"), {"fields": ("requires_approval",)}),
    )
    # The composer's pages need "change" even to open them (they are forms).
    scope_object_views = {
        "message_add": policy.CHANGE,
        "message_edit": policy.CHANGE,
        "message_delete": policy.CHANGE,
        "message_move": policy.CHANGE,
    }

    # -- permissions: only drafts are edited ------------------------------------

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status != Broadcast.Status.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status != Broadcast.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "segment":
            kwargs["queryset"] = services.segments_for(request.user)
        elif db_field.name == "category":
            kwargs["queryset"] = Category.objects.filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.status != Broadcast.Status.DRAFT:
            # Read-only: the form-only helpers (confirmations, exclusion shortcuts) have nothing to show.
            helpers = {"emergency_confirmed", "exclude_year_end", "exclude_holidays"}
            return [
                (name, {**options, "fields": [f for f in options["fields"] if f not in helpers]})
                for name, options in self.fieldsets
            ]
        return self.fieldsets

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            return
        # Only what the page shows: its messages are edited on their own pages meanwhile.
        shown = {field.name for field in Broadcast._meta.concrete_fields} & set(form.cleaned_data)
        obj.save(update_fields=[*sorted(shown), "updated_at"])

    # -- pages -------------------------------------------------------------------

    def get_urls(self):
        def view(function, route, suffix):
            return path(
                f"<int:object_id>/{route}",
                self.admin_site.admin_view(function),
                name=f"broadcasts_broadcast_{suffix}",
            )

        return [
            view(self.message_add_view, "messages/add/<str:kind>/", "message_add"),
            view(self.message_edit_view, "messages/<int:index>/", "message_edit"),
            view(self.message_delete_view, "messages/<int:index>/delete/", "message_delete"),
            view(self.message_move_view, "messages/<int:index>/move/", "message_move"),
            view(self.submit_view, "submit/", "submit"),
            view(self.approve_view, "approve/", "approve"),
            view(self.cancel_view, "cancel/", "cancel"),
            view(self.return_view, "return/", "return"),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        broadcast = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if broadcast is not None:
            extra.update(self._panel_context(request, broadcast))
        return super().change_view(request, object_id, form_url, extra)

    def _panel_context(self, request, broadcast: Broadcast) -> dict:
        user = request.user
        may_change = policy.can(user, policy.CHANGE, broadcast)
        is_draft = broadcast.status == Broadcast.Status.DRAFT
        rows = []
        for index, message in enumerate(broadcast.messages or []):
            kind = message.get("kind", "") if isinstance(message, dict) else ""
            rows.append(
                {
                    "number": index + 1,
                    "kind_label": compose.KIND_LABELS.get(kind, kind),
                    "errors": compose.message_errors(message),
                    "edit_url": reverse("admin:broadcasts_broadcast_message_edit", args=[broadcast.pk, index]),
                    "delete_url": reverse("admin:broadcasts_broadcast_message_delete", args=[broadcast.pk, index]),
                    "move_url": reverse("admin:broadcasts_broadcast_message_move", args=[broadcast.pk, index]),
                    "first": index == 0,
                    "last": index == len(broadcast.messages) - 1,
                }
            )
        problems = compose.messages_errors(broadcast.messages)
        preview = [] if problems else preview_items(compose.line_messages(broadcast.messages))
        awaiting = broadcast.status == Broadcast.Status.AWAITING_APPROVAL
        return {
            "broadcast": broadcast,
            "message_rows": rows,
            "can_compose": is_draft and may_change,
            "can_add_message": is_draft and may_change and len(rows) < BROADCAST_MAX_MESSAGES,
            "message_kinds": [
                (kind, label, reverse("admin:broadcasts_broadcast_message_add", args=[broadcast.pk, kind]))
                for kind, label in compose.KIND_LABELS.items()
            ],
            "max_messages": BROADCAST_MAX_MESSAGES,
            "message_problems": problems,
            "preview": preview,
            "can_submit": is_draft and may_change,
            "can_approve": awaiting and may_change and broadcast.created_by_id != user.pk,
            "own_awaiting": awaiting and broadcast.created_by_id == user.pk,
            "can_cancel": may_change and broadcast.status in services.CANCELLABLE,
            "can_return": may_change and broadcast.status in services.RETURNABLE,
            "returned_reason_max": RETURNED_REASON_MAX,
            "submit_url": reverse("admin:broadcasts_broadcast_submit", args=[broadcast.pk]),
            "approve_url": reverse("admin:broadcasts_broadcast_approve", args=[broadcast.pk]),
            "approve_seen": broadcast.updated_at.isoformat(),
            "needs_approval": broadcast.requires_approval or services.approval_required_by_department(broadcast),
            "latest_run": broadcast.runs.exclude(status=BroadcastRun.Status.CANCELLED)
            .order_by("-scheduled_for", "-pk")
            .first(),
            "runs_url": reverse("admin:broadcasts_broadcastrun_changelist") + f"?broadcast__id__exact={broadcast.pk}",
            "cancel_url": reverse("admin:broadcasts_broadcast_cancel", args=[broadcast.pk]),
            "return_url": reverse("admin:broadcasts_broadcast_return", args=[broadcast.pk]),
        }

    def _object(self, request, object_id) -> Broadcast:
        broadcast = self.get_object(request, unquote(str(object_id)))
        if broadcast is None:
            raise Http404
        return broadcast

    def _refused(self, request, error: services.BroadcastRefused) -> None:
        for message in error.messages:
            messages.error(request, message)

    # -- the composer -------------------------------------------------------------

    def _message_page(self, request, broadcast: Broadcast, editor, *, kind: str, title: str):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "broadcast": broadcast,
            "editor": editor,
            "kind": kind,
            "change_url": _change_url(broadcast.pk),
        }
        return TemplateResponse(request, "admin/broadcasts/broadcast/message_form.html", context)

    def _save_messages(self, request, broadcast: Broadcast, new_messages: list[dict]) -> bool:
        try:
            services.broadcast_messages_update(broadcast_id=broadcast.pk, messages=new_messages, user=request.user)
        except services.BroadcastRefused as error:
            self._refused(request, error)
            return False
        return True

    def message_add_view(self, request, object_id, kind):
        broadcast = self._object(request, object_id)
        if kind not in EDITORS:
            raise Http404
        if request.method == "POST":
            editor = message_editor(kind, data=request.POST, files=request.FILES)
            if editor.is_valid() and self._save_messages(request, broadcast, [*broadcast.messages, editor.message]):
                messages.success(request, _("メッセージを追加しました。"))
                return HttpResponseRedirect(_change_url(broadcast.pk))
        else:
            editor = message_editor(kind)
        label = compose.KIND_LABELS[kind]
        return self._message_page(
            request, broadcast, editor, kind=kind, title=_("メッセージを追加（%(kind)s）") % {"kind": label}
        )

    def message_edit_view(self, request, object_id, index):
        broadcast = self._object(request, object_id)
        if not 0 <= index < len(broadcast.messages):
            raise Http404
        current = broadcast.messages[index]
        kind = current.get("kind")
        if kind not in EDITORS:
            raise Http404
        if request.method == "POST":
            editor = message_editor(kind, message=current, data=request.POST, files=request.FILES)
            if editor.is_valid():
                updated = list(broadcast.messages)
                updated[index] = editor.message
                if self._save_messages(request, broadcast, updated):
                    messages.success(request, _("メッセージを保存しました。"))
                    return HttpResponseRedirect(_change_url(broadcast.pk))
        else:
            editor = message_editor(kind, message=current)
        label = compose.KIND_LABELS[kind]
        title = _("メッセージ%(number)sを編集（%(kind)s）") % {"number": index + 1, "kind": label}
        return self._message_page(request, broadcast, editor, kind=kind, title=title)

    def message_delete_view(self, request, object_id, index):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        broadcast = self._object(request, object_id)
        if 0 <= index < len(broadcast.messages):
            remaining = [m for i, m in enumerate(broadcast.messages) if i != index]
            if self._save_messages(request, broadcast, remaining):
                messages.success(request, _("メッセージを削除しました。"))
        return HttpResponseRedirect(_change_url(broadcast.pk))

    def message_move_view(self, request, object_id, index):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        broadcast = self._object(request, object_id)
        target = index - 1 if request.POST.get("direction") == "up" else index + 1
        reordered = list(broadcast.messages)
        if 0 <= index < len(reordered) and 0 <= target < len(reordered):
            reordered[index], reordered[target] = reordered[target], reordered[index]
            self._save_messages(request, broadcast, reordered)
        return HttpResponseRedirect(_change_url(broadcast.pk))

    # -- submit, approve, cancel -----------------------------------------------------

    def _act(self, request, object_id, service, success: str, **arguments):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        broadcast = self._object(request, object_id)
        try:
            service(broadcast_id=broadcast.pk, user=request.user, request=request, **arguments)
        except services.BroadcastRefused as error:
            self._refused(request, error)
        else:
            messages.success(request, success)
        return HttpResponseRedirect(_change_url(broadcast.pk))

    def submit_view(self, request, object_id):
        return self._act(
            request, object_id, services.broadcast_submit, _("配信の手続きをしました。状態を確認してください。")
        )

    def approve_view(self, request, object_id):
        return self._act(
            request,
            object_id,
            services.broadcast_approve,
            _("承認しました。予約どおりに配信します。"),
            seen_updated_at=_posted_datetime(request, "seen"),
        )

    def cancel_view(self, request, object_id):
        return self._act(request, object_id, services.broadcast_cancel, _("一斉配信を取り消しました。"))

    def return_view(self, request, object_id):
        return self._act(
            request,
            object_id,
            services.broadcast_return_to_draft,
            _("下書きに戻しました。直してから、もう一度配信の手続きをしてください。"),
            reason=request.POST.get("reason", ""),
        )
