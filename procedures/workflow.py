"""The status workflow of applications: statuses per procedure, staff changes, LINE notices, withdrawal.

    application_status_change(application=…, to_status=…, actor=staff_user, note="")
        one transaction: lock the application, refuse a change the procedure does not allow,
        record the change (ApplicationStatusChange), and queue the LINE notice of the new status
        through the channel that reaches the resident (procedures/notices.py; LINE: the outbox).
    application_withdraw(application=…, line_user_id=…)      the resident's own withdrawal
    application_status_list(line_user_id=…)                   "申請状況" for the resident
    resident_status_reply(line_user_id=…, event=…, state=…)    the built-in words and buttons of
        "申請状況" and withdrawal, answered before the engine (procedures.services.conversation_handle)

Notices carry the receipt number, the procedure's name, the status and a link chosen by staff –
never a resident's answers: a template may only use the placeholders {受付番号} {手続き名} {状態}
{リンク} (or {receipt_number} {procedure} {status} {link}); anything else in braces is refused when
staff save it (notice_template_problems) and again before anything is sent.

Only LINE user ids ("U" + 32 hex) get pushes: the procedure simulator's partners ("sim-…") never do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions
from audit.services import audit_record
from procedures.engine import validators
from procedures.engine.types import Action, Event, Message
from procedures.models import (
    DEFAULT_STATUSES,
    DEFAULT_TRANSITIONS,
    NOTICE_TEMPLATE_MAX,
    WITHDRAWN_CODE,
    Application,
    ApplicationStatus,
    ApplicationStatusChange,
    ComputedValue,
    Procedure,
    StatusTransition,
    Step,
)
from procedures.notices import notice_send
from procedures.signals import application_status_changed

logger = logging.getLogger(__name__)


# Placeholder name -> what it stands for. The only things a notice may carry.
PLACEHOLDERS = {
    "受付番号": "receipt_number",
    "手続き名": "procedure",
    "状態": "status",
    "リンク": "link",
    "receipt_number": "receipt_number",
    "procedure": "procedure",
    "status": "status",
    "link": "link",
}
_BRACED = re.compile(r"\{([^{}]*)\}")
_PERCENT_FORMAT = re.compile(r"%\(([^)]*)\)")
_FULL_WIDTH_BRACES = str.maketrans({"｛": "{", "｝": "}"})

# What a resident types or taps (procedures/texts.py renders the replies).
STATUS_WORDS = frozenset({"申請状況", "申請状況を確認", "申請状況を確認する", "申請状況の確認", "申請状況確認"})
COMMAND_LIST = "status_list"
COMMAND_WITHDRAW = "status_withdraw"
COMMAND_WITHDRAW_CONFIRM = "status_withdraw_confirm"
COMMAND_WITHDRAW_KEEP = "status_withdraw_keep"
STATUS_COMMANDS = frozenset({COMMAND_LIST, COMMAND_WITHDRAW, COMMAND_WITHDRAW_CONFIRM, COMMAND_WITHDRAW_KEEP})
STATUS_LIST_LIMIT = 10  # the newest ones; LINE shows at most 13 quick replies


class WorkflowError(Exception):
    """A change that cannot be made; `message` is a Japanese sentence for staff or the resident."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class TransitionNotAllowed(WorkflowError):
    pass


class WithdrawalNotAllowed(WorkflowError):
    pass


class AlreadyWithdrawn(WithdrawalNotAllowed):
    pass


# --------------------------------------------------------------------------
# Statuses of a procedure
# --------------------------------------------------------------------------


@transaction.atomic
def procedure_statuses_ensure(*, procedure: Procedure) -> bool:
    """Give a procedure without statuses the default statuses and transitions; True when created."""
    Procedure.objects.select_for_update().filter(pk=procedure.pk).first()
    if ApplicationStatus.objects.filter(procedure_id=procedure.pk).exists():
        return False
    statuses = {
        item["code"]: ApplicationStatus.objects.create(procedure_id=procedure.pk, **item) for item in DEFAULT_STATUSES
    }
    StatusTransition.objects.bulk_create(
        StatusTransition(procedure_id=procedure.pk, from_status=statuses[source], to_status=statuses[target])
        for source, target in DEFAULT_TRANSITIONS
    )
    return True


def procedure_initial_status(*, procedure: Procedure) -> ApplicationStatus:
    """The status a new application of `procedure` starts in (default statuses are made when missing)."""
    status = ApplicationStatus.objects.filter(procedure_id=procedure.pk, is_initial=True).first()
    if status is None:
        procedure_statuses_ensure(procedure=procedure)
        status = ApplicationStatus.objects.filter(procedure_id=procedure.pk, is_initial=True).first()
    if status is None:
        # Statuses exist but staff left none marked as the first: the first one in order.
        status = ApplicationStatus.objects.filter(procedure_id=procedure.pk).order_by("order", "id").first()
    if status is None:  # pragma: no cover - procedure_statuses_ensure always leaves statuses
        raise WorkflowError(_("この手続きには申請の状態が設定されていません。"))
    return status


def initial_status_subquery(procedure_ref: str = "procedure_id") -> Subquery:
    """The id of the initial status of the procedure at `procedure_ref` (for .annotate(); None if none)."""
    return Subquery(
        ApplicationStatus.objects.filter(procedure_id=OuterRef(procedure_ref))
        .order_by("-is_initial", "order", "id")
        .values("pk")[:1]
    )


def next_statuses(*, application: Application) -> list[tuple[ApplicationStatus, bool]]:
    """(status, sends a LINE notice) for every status staff may move `application` to now, in order."""
    transitions = (
        StatusTransition.objects.filter(from_status_id=application.status_id)
        .select_related("to_status")
        .order_by("to_status__order", "to_status__id")
    )
    return [
        (transition.to_status, transition.notify and bool(transition.to_status.notify_template.strip()))
        for transition in transitions
    ]


# --------------------------------------------------------------------------
# Notice templates
# --------------------------------------------------------------------------


def _step_references(procedure: Procedure | None) -> dict[str, str]:
    """Every step key and label (and computed value) of the procedure, any version -> its label."""
    if procedure is None or procedure.pk is None:
        return {}
    references: dict[str, str] = {}
    for key, label in Step.objects.filter(version__procedure_id=procedure.pk).values_list("key", "label"):
        label = (label or "").strip()
        references.setdefault(key, label or key)
        if label:
            references.setdefault(label, label)
    for key, label in ComputedValue.objects.filter(version__procedure_id=procedure.pk).values_list("key", "label"):
        references.setdefault(key, label or key)
        if label:
            references.setdefault(label.strip(), label.strip())
    return references


def notice_template_problems(template: str, *, procedure: Procedure | None = None, link: str = "") -> list[str]:
    """Every reason `template` cannot be used as a LINE notice, in Japanese; empty when it can.

    Allowed: {受付番号} {手続き名} {状態} {リンク} and {receipt_number} {procedure} {status} {link}.
    Anything else in braces is refused – with its own sentence when it names one of the procedure's
    questions (a key or a label), because a notice must never carry a resident's answers.
    """
    text = (template or "").translate(_FULL_WIDTH_BRACES)
    problems: list[str] = []
    references = _step_references(procedure)
    allowed = " ".join(f"{{{name}}}" for name in list(PLACEHOLDERS)[:4])
    for match in _BRACED.finditer(text):
        name = match.group(1).strip()
        if name in PLACEHOLDERS:
            continue
        if name in references:
            problems.append(
                _("「{%(name)s}」は申請の回答（「%(label)s」）を指しています。お知らせに回答は入れられません。")
                % {"name": name, "label": references[name][:40]}
            )
        else:
            problems.append(
                _("「{%(name)s}」は使えません。使える差し込み項目：%(allowed)s")
                % {"name": name[:40], "allowed": allowed}
            )
    rest = _BRACED.sub("", text)
    if "{" in rest or "}" in rest:
        problems.append(_("「{」と「}」の対応が取れていません。差し込み項目は {受付番号} のように書いてください。"))
    for match in _PERCENT_FORMAT.finditer(text):
        problems.append(
            _("「%(text)s」という書き方は使えません。差し込み項目は {受付番号} のように書いてください。")
            % {"text": match.group(0)[:40]}
        )
    if len(text) > NOTICE_TEMPLATE_MAX:
        problems.append(_("お知らせの文面は%(max)s文字以内にしてください。") % {"max": NOTICE_TEMPLATE_MAX})
    uses_link = any(PLACEHOLDERS.get(m.group(1).strip()) == "link" for m in _BRACED.finditer(text))
    if uses_link and not (link or "").strip():
        problems.append(_("{リンク} を使うときは「お知らせのリンク」に URL を入力してください。"))
    return list(dict.fromkeys(problems))


def notice_render(*, template: str, application: Application, status: ApplicationStatus) -> str:
    """The notice text: the template with its placeholders filled in (nothing else is ever inserted)."""
    values = {
        "receipt_number": application.receipt_number,
        "procedure": application.procedure.name,
        "status": status.label,
        "link": status.notify_link,
    }
    text = (template or "").translate(_FULL_WIDTH_BRACES)
    return _BRACED.sub(lambda match: values.get(PLACEHOLDERS.get(match.group(1).strip(), ""), ""), text).strip()


def _notice_queue(application: Application, status: ApplicationStatus) -> bool:
    """Hand the status notice to the resident's channel (in the caller's transaction); whether it took it."""
    line_user_id = application.line_user_id or ""
    template = status.notify_template or ""
    if not template.strip():
        return False
    if notice_template_problems(template, procedure=application.procedure, link=status.notify_link):
        logger.warning("status notice of status %s not sent: its template has problems", status.pk)
        return False
    text = notice_render(template=template, application=application, status=status)
    if not text:
        return False
    return notice_send(line_user_id=line_user_id, messages=(Message("status.notice", {"text": text}),))


# --------------------------------------------------------------------------
# Changes
# --------------------------------------------------------------------------


def _locked(application: Application) -> Application:
    return Application.objects.select_for_update().get(pk=application.pk)


def _status_of(application: Application) -> ApplicationStatus:
    if application.status_id is None:
        return procedure_initial_status(procedure=application.procedure)
    return ApplicationStatus.objects.get(pk=application.status_id)


def _record(
    application: Application,
    current: ApplicationStatus,
    to_status: ApplicationStatus,
    *,
    actor,
    via: str,
    note: str,
    notify: bool,
    request=None,
) -> ApplicationStatusChange:
    application.status = to_status
    application.save(update_fields=["status"])
    notified = _notice_queue(application, to_status) if notify else False
    staff = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    change = ApplicationStatusChange.objects.create(
        application=application,
        from_status=current,
        to_status=to_status,
        actor=staff,
        via=via,
        note=(note or "").strip(),
        notified=notified,
    )
    audit_record(
        actor=staff,
        action=actions.APPLICATION_STATUS_CHANGE,
        obj=application,
        details={
            "receipt_number": application.receipt_number[:40],
            "from": current.code,
            "to": to_status.code,
            "via": via,
            "notified": notified,
        },
        request=request,
    )
    application_status_changed.send(sender=Application, application=application, change=change)
    return change


@transaction.atomic
def application_status_change(
    *,
    application: Application,
    to_status: ApplicationStatus | int,
    actor,
    note: str = "",
    request=None,
    notify: bool = True,
) -> ApplicationStatusChange:
    """Move an application to `to_status` along one of its procedure's transitions (staff or system).

    Raises TransitionNotAllowed (with a Japanese message) when the procedure does not allow it.
    The LINE notice of the new status, if the transition sends one, is written to the outbox in
    this transaction; `notify=False` leaves it out when the caller answers the resident itself.
    """
    application = _locked(application)
    status_id = to_status.pk if isinstance(to_status, ApplicationStatus) else to_status
    target = ApplicationStatus.objects.filter(pk=status_id, procedure_id=application.procedure_id).first()
    if target is None:
        raise TransitionNotAllowed(_("この手続きにはその状態がありません。"))
    current = _status_of(application)
    if current.pk == target.pk:
        raise TransitionNotAllowed(_("この申請はすでに「%(status)s」です。") % {"status": target.label})
    transition = StatusTransition.objects.filter(from_status=current, to_status=target).first()
    if transition is None:
        allowed = "、".join(f"「{status.label}」" for status, _notify in next_statuses(application=application))
        message = _("「%(from)s」から「%(to)s」には変更できません。") % {"from": current.label, "to": target.label}
        if allowed:
            message += _("変更できる状態：%(allowed)s") % {"allowed": allowed}
        else:
            message += _("「%(from)s」からは変更できません。") % {"from": current.label}
        raise TransitionNotAllowed(message)
    via = ApplicationStatusChange.Via.STAFF if actor is not None else ApplicationStatusChange.Via.SYSTEM
    return _record(
        application,
        current,
        target,
        actor=actor,
        via=via,
        note=note,
        notify=transition.notify and notify,
        request=request,
    )


def _withdrawn_status(application: Application) -> ApplicationStatus | None:
    return ApplicationStatus.objects.filter(procedure_id=application.procedure_id, code=WITHDRAWN_CODE).first()


@transaction.atomic
def application_withdraw(*, application: Application, line_user_id: str) -> ApplicationStatusChange:
    """The resident withdraws their own application while its status still allows it.

    Raises AlreadyWithdrawn / WithdrawalNotAllowed (Japanese messages). No LINE notice is queued:
    the resident is answered in the conversation itself.
    """
    application = _locked(application)
    if not line_user_id or application.line_user_id != line_user_id:
        raise WithdrawalNotAllowed(_("該当する申請が見つかりません。"))
    current = _status_of(application)
    if current.code == WITHDRAWN_CODE:
        raise AlreadyWithdrawn(
            _("受付番号 %(receipt_number)s の申請は、すでに取り下げられています。")
            % {"receipt_number": application.receipt_number}
        )
    target = _withdrawn_status(application)
    if not current.allows_withdrawal or target is None:
        raise WithdrawalNotAllowed(
            _(
                "受付番号 %(receipt_number)s の申請は、現在の状態（%(status)s）では LINE から取り下げできません。"
                "取り下げを希望される場合は、担当課へお問い合わせください。"
            )
            % {"receipt_number": application.receipt_number, "status": current.label}
        )
    return _record(
        application, current, target, actor=None, via=ApplicationStatusChange.Via.RESIDENT, note="", notify=False
    )


# --------------------------------------------------------------------------
# The resident's side: 申請状況 and withdrawal in the conversation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusListing:
    applications: list[dict]
    more: int


def application_status_list(*, line_user_id: str, limit: int = STATUS_LIST_LIMIT) -> StatusListing:
    """The resident's own applications, newest first: receipt number, procedure, status, date, withdrawable.

    Only the conversation partner's own applications (a simulator run sees its own test applications).
    """
    if not line_user_id:
        return StatusListing(applications=[], more=0)
    queryset = (
        Application.objects.filter(line_user_id=line_user_id)
        .select_related("procedure", "status")
        .order_by("-submitted_at", "-id")
    )
    rows = list(queryset[: limit + 1])
    more = queryset.count() - limit if len(rows) > limit else 0
    withdrawable_procedures = set(
        ApplicationStatus.objects.filter(
            procedure_id__in={row.procedure_id for row in rows}, code=WITHDRAWN_CODE
        ).values_list("procedure_id", flat=True)
    )
    applications = []
    for row in rows[:limit]:
        status = row.status
        applications.append(
            {
                "receipt_number": row.receipt_number,
                "procedure": row.procedure.name,
                "status": status.label if status else "",
                "submitted_at": timezone.localtime(row.submitted_at).date().isoformat(),
                "can_withdraw": bool(status and status.allows_withdrawal and row.procedure_id in withdrawable_procedures),
            }
        )
    return StatusListing(applications=applications, more=more)


def is_status_request(event: Event) -> bool:
    """Whether the conversation should answer `event` here rather than pass it to the engine."""
    if event.type == "text":
        return validators.normalize_typed(event.text or "") in STATUS_WORDS
    return event.type == "command" and event.name in STATUS_COMMANDS


def _status_list_message(line_user_id: str) -> Message:
    listing = application_status_list(line_user_id=line_user_id)
    if not listing.applications:
        return Message("status.empty")
    actions = tuple(
        Action(
            "action.withdraw",
            {"number": number, "receipt_number": item["receipt_number"]},
            Event(type="command", name=COMMAND_WITHDRAW, value=item["receipt_number"]),
        )
        for number, item in enumerate(listing.applications, start=1)
        if item["can_withdraw"]
    )
    return Message(
        "status.list",
        {"applications": listing.applications, "more": listing.more},
        layout="question" if actions else "text",
        actions=actions,
    )


def _own_application(line_user_id: str, receipt_number) -> Application | None:
    if not isinstance(receipt_number, str) or not receipt_number or not line_user_id:
        return None
    return (
        Application.objects.filter(line_user_id=line_user_id, receipt_number=receipt_number)
        .select_related("procedure", "status")
        .first()
    )


def _about(application: Application) -> dict:
    return {
        "receipt_number": application.receipt_number,
        "procedure": application.procedure.name,
        "status": application.status.label if application.status_id else "",
    }


def _withdraw_question(line_user_id: str, receipt_number) -> Message:
    application = _own_application(line_user_id, receipt_number)
    if application is None:
        return Message("status.not_found")
    status = _status_of(application)
    if status.code == WITHDRAWN_CODE:
        return Message("status.already_withdrawn", _about(application))
    if not status.allows_withdrawal or _withdrawn_status(application) is None:
        return Message("status.withdraw_not_allowed", _about(application))
    value = application.receipt_number
    return Message(
        "status.confirm_withdraw",
        _about(application),
        layout="confirm",
        actions=(
            Action("action.withdraw_confirm", {}, Event(type="command", name=COMMAND_WITHDRAW_CONFIRM, value=value)),
            Action("action.withdraw_keep", {}, Event(type="command", name=COMMAND_WITHDRAW_KEEP, value=value)),
        ),
    )


def _withdraw(line_user_id: str, receipt_number) -> Message:
    application = _own_application(line_user_id, receipt_number)
    if application is None:
        return Message("status.not_found")
    try:
        application_withdraw(application=application, line_user_id=line_user_id)
    except AlreadyWithdrawn:
        return Message("status.already_withdrawn", _about(application))
    except WithdrawalNotAllowed:
        application.refresh_from_db()
        return Message("status.withdraw_not_allowed", _about(application))
    application.refresh_from_db()
    return Message("status.withdrawn", _about(application))


def resident_status_reply(*, line_user_id: str, event: Event, state: dict | None) -> tuple[Message, ...] | None:
    """The reply to 「申請状況」 or a withdrawal button, or None when `event` is for the engine.

    Channel-neutral messages (procedures/texts.py renders them); the engine's state is left as it
    is, so a procedure in progress simply continues with the resident's next answer.
    """
    if not is_status_request(event):
        return None
    if event.type == "text" or event.name == COMMAND_LIST:
        messages = [_status_list_message(line_user_id)]
    elif event.name == COMMAND_WITHDRAW:
        messages = [_withdraw_question(line_user_id, event.value)]
    elif event.name == COMMAND_WITHDRAW_CONFIRM:
        messages = [_withdraw(line_user_id, event.value)]
    else:
        messages = [Message("status.withdraw_kept")]
    session = (state or {}).get("session") if isinstance(state, dict) else None
    if isinstance(session, dict) and isinstance(session.get("procedure_id"), int):
        name = Procedure.objects.filter(pk=session["procedure_id"]).values_list("name", flat=True).first()
        messages.append(Message("status.session_continues", {"name": name or ""}))
    return tuple(messages)
