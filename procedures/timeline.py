"""Everything that happened to one application, oldest first: the timeline on the staff detail page.

    application_timeline(application) -> list[TimelineEntry]

Entries come from SOURCES, a list of small functions `source(application) -> iterable of
TimelineEntry`, each reading one kind of record (the submission, status changes, the audit log…).
A new kind of record (messages with the resident, correction requests) is one more function
appended to SOURCES. Entries never carry a resident's answers: they say what happened and who did it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit import actions
from audit.models import AuditEntry
from procedures.models import (
    Application,
    ApplicationMessage,
    ApplicationStatusChange,
    CorrectionRequest,
    StaffField,
)
from procedures.selectors import procedure_spec_get
from procedures.spec import SpecError


@dataclass(frozen=True)
class TimelineEntry:
    time: datetime
    kind: str  # a stable code: "submitted", "status", "assign", "needs_action", "staff_fields", "view"…
    label: str  # what happened, in Japanese (申請, 状態の変更, 担当…)
    actor: str  # who: a staff login name, 住民, システム
    text: str = ""


Source = Callable[[Application], Iterable[TimelineEntry]]

RESIDENT = gettext_lazy("住民")
SYSTEM = gettext_lazy("システム")

# Why an application became 要対応 (services.application_needs_action_set's reason codes).
NEEDS_ACTION_REASONS = {
    "message": gettext_lazy("住民からのメッセージ"),
    "resubmitted": gettext_lazy("修正された申請の再提出"),
}
# Looking at an application (and its images, its print page) reads as one kind: 閲覧.
VIEW_ACTIONS = {
    actions.APPLICATION_VIEW: gettext_lazy("詳細画面"),
    actions.APPLICATION_REVEAL: gettext_lazy("機微情報の表示"),
    actions.APPLICATION_IMAGE_VIEW: gettext_lazy("添付画像"),
    actions.APPLICATION_PRINT: gettext_lazy("印刷用の画面"),
}


def submission(application: Application) -> Iterable[TimelineEntry]:
    entered_by = getattr(application, "entered_by", None)
    actor = entered_by.get_username() if entered_by is not None else str(RESIDENT)
    yield TimelineEntry(application.submitted_at, "submitted", _("申請"), actor,
                        _("受付番号 %(receipt)s で受け付けました。") % {"receipt": application.receipt_number})


def status_changes(application: Application) -> Iterable[TimelineEntry]:
    changes = (
        ApplicationStatusChange.objects.filter(application_id=application.pk)
        .select_related("from_status", "to_status", "actor")
        .order_by("created_at", "id")
    )
    for change in changes:
        if change.actor is not None:
            actor = change.actor.get_username()
        else:
            actor = str(RESIDENT if change.via == ApplicationStatusChange.Via.RESIDENT else SYSTEM)
        before = change.from_status.label if change.from_status else "—"
        text = f"「{before}」→「{change.to_status.label}」"
        if change.notified:
            text += _("（LINE でお知らせ）")
        if change.note:
            text += _("　メモ：%(note)s") % {"note": change.note}
        yield TimelineEntry(change.created_at, "status", _("状態の変更"), actor, text)


def _user_names(ids) -> dict[int, str]:
    wanted = {pk for pk in ids if isinstance(pk, int)}
    if not wanted:
        return {}
    return dict(get_user_model().objects.filter(pk__in=wanted).values_list("pk", "username"))


def audit_entries(application: Application) -> Iterable[TimelineEntry]:
    """Assignments, 要対応, 管理項目 and views, from the audit log (status changes have their own history)."""
    entries = list(
        AuditEntry.objects.filter(object_type=Application._meta.label_lower, object_id=str(application.pk))
        .exclude(action__in=[actions.APPLICATION_STATUS_CHANGE, *CORRESPONDENCE_ACTIONS])
        .order_by("created_at", "id")
    )
    names = _user_names(entry.details.get("to") for entry in entries if entry.action == actions.APPLICATION_ASSIGN)
    labels = dict(StaffField.objects.filter(procedure_id=application.procedure_id).values_list("key", "label"))
    for entry in entries:
        details = entry.details if isinstance(entry.details, dict) else {}
        actor = entry.actor_display or str(SYSTEM)
        if entry.action == actions.APPLICATION_ASSIGN:
            to = details.get("to")
            text = _("担当：%(name)s") % {"name": names.get(to, "—")} if to else _("担当を外しました")
            yield TimelineEntry(entry.created_at, "assign", _("担当"), actor, text)
        elif entry.action == actions.APPLICATION_NEEDS_ACTION:
            if details.get("needs_action"):
                reason = details.get("reason") or ""
                text = _("要対応になりました（%(reason)s）") % {"reason": NEEDS_ACTION_REASONS.get(reason, reason)}
            else:
                text = _("対応済みにしました")
            yield TimelineEntry(entry.created_at, "needs_action", _("要対応"), actor, text)
        elif entry.action == actions.APPLICATION_STAFF_FIELDS:
            keys = details.get("keys") or []
            text = "、".join(labels.get(key, str(key)) for key in keys)
            yield TimelineEntry(entry.created_at, "staff_fields", _("管理項目の更新"), actor, text)
        elif entry.action in VIEW_ACTIONS:
            yield TimelineEntry(entry.created_at, "view", _("閲覧"), actor, str(VIEW_ACTIONS[entry.action]))
        else:
            yield TimelineEntry(entry.created_at, "audit", actions.label(entry.action), actor, "")


# Messages and correction requests have their own records (procedures/correspondence.py).
CORRESPONDENCE_ACTIONS = (
    actions.APPLICATION_MESSAGE,
    actions.APPLICATION_CORRECTION_REQUEST,
    actions.APPLICATION_CORRECTION_CANCEL,
    actions.APPLICATION_RESUBMIT,
)
TIMELINE_TEXT_MAX = 200


def _short(text: str) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= TIMELINE_TEXT_MAX else text[: TIMELINE_TEXT_MAX - 1] + "…"


def messages(application: Application) -> Iterable[TimelineEntry]:
    rows = ApplicationMessage.objects.filter(application_id=application.pk).select_related("sender")
    for message in rows.order_by("created_at", "id"):
        if message.direction == ApplicationMessage.Direction.TO_RESIDENT:
            actor = message.sender.get_username() if message.sender_id else str(SYSTEM)
            label = _("住民へのメッセージ")
            if message.delivery == ApplicationMessage.Delivery.UNREACHABLE:
                label += _("（LINE で届けられない相手）")
        else:
            actor, label = str(RESIDENT), _("住民からのメッセージ")
        yield TimelineEntry(message.created_at, "message", label, actor, _short(message.text))


def corrections(application: Application) -> Iterable[TimelineEntry]:
    rows = CorrectionRequest.objects.filter(application_id=application.pk).select_related(
        "requested_by", "cancelled_by", "return_status"
    )
    rows = list(rows.order_by("created_at", "id"))
    labels = {}
    if rows:
        try:
            labels = {step.key: step.label for step in procedure_spec_get(application.version).steps}
        except SpecError:
            pass  # an unreadable version: the step keys are shown as they are
    for correction in rows:
        requester = correction.requested_by.get_username() if correction.requested_by_id else str(SYSTEM)
        yield TimelineEntry(correction.created_at, "correction", _("修正依頼"), requester,
                            _("項目：%(keys)s　理由：%(reason)s") % {
                                "keys": "、".join(labels.get(key) or key for key in correction.keys),
                                "reason": _short(correction.reason)})
        if correction.cancelled_at is not None:
            canceller = correction.cancelled_by.get_username() if correction.cancelled_by_id else str(SYSTEM)
            yield TimelineEntry(correction.cancelled_at, "correction", _("修正依頼の取消し"), canceller, "")
        if correction.answered_at is not None:
            yield TimelineEntry(correction.answered_at, "correction", _("修正された申請の再提出"), str(RESIDENT),
                                _("再提出後の状態：%(status)s") % {"status": correction.return_status.label})


SOURCES: list[Source] = [submission, status_changes, audit_entries, messages, corrections]


def application_timeline(application: Application) -> list[TimelineEntry]:
    """Every entry of every source, oldest first (entries at the same moment keep the sources' order)."""
    entries = [entry for source in SOURCES for entry in source(application)]
    return sorted(entries, key=lambda entry: entry.time)
