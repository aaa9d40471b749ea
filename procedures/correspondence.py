"""Messages with the resident and correction requests (修正依頼): writes, channel-neutral.

Staff side (called by the admin pages, policy "process"):
    application_message_send(application=…, text=…, sender=…)       a free message, pushed as a notice
    correction_request_create(application=…, keys=…, reason=…, return_status=…, actor=…)
    correction_cancel(correction=…, actor=…)

Resident side (called by procedures.services.conversation_handle before the engine):
    resident_input_intercept(line_user_id=…, event=…, state=…, now=…)
        - a text outside a procedure within RESIDENT_REPLY_WINDOW_HOURS of a staff message about one
          of the resident's applications is stored as the reply (要対応, short acknowledgement);
        - the 修正する button (a signed postback carrying "<correction id>:<token>") is checked here and
          becomes the engine's CORRECTION_EVENT with the application's answers and the marked steps.
    resubmission_apply(effect=Resubmit, line_user_id=…)   the engine's Resubmit effect: application_resubmit

Nothing here puts a resident's answers into a message: notices carry the procedure's name, the
receipt number and what staff wrote, and what staff write is refused when it repeats an answer.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _

from audit import actions as audit_actions
from audit.services import audit_record
from procedures import services
from procedures.engine.types import CORRECTION_EVENT, Action, Event, Message, Resubmit
from procedures.models import (
    APPLICATION_MESSAGE_MAX,
    CORRECTION_REASON_MAX,
    CORRECTION_STATUS_CODE,
    Application,
    ApplicationMessage,
    ApplicationRevision,
    ApplicationStatus,
    CorrectionRequest,
    StatusTransition,
)
from procedures.notices import notice_send
from procedures.selectors import catalog_build, procedure_spec_get
from procedures.signals import application_resubmitted
from procedures.spec import SpecError
from procedures.workflow import WorkflowError, application_status_change
from staff import policy

logger = logging.getLogger(__name__)

# The postback command of the 修正する button; its value is "<correction id>:<token>".
COMMAND_CORRECTION_START = "correction_start"
# A resident's reply is kept whole up to LINE's own limit of one text message.
RESIDENT_REPLY_MAX = 5000
# Answers shorter than this are too common to be recognised in a staff text (はい, 1, 玄関…);
# sensitive answers (names, phone numbers) are looked for from two characters.
_ANSWER_MIN_CHARS = 3
_SENSITIVE_ANSWER_MIN_CHARS = 2
_TEXT_KINDS = ("short_text", "long_text", "number", "location")
_IGNORED_CHARS = re.compile(r"[\s\-‐‑‒–—―ー－、。，．,.・]")
# Twelve digits, in groups of four or not (after NFKC: full-width digits are plain ones).
_MY_NUMBER_CANDIDATE = re.compile(r"(?<!\d)\d{4}[\s\-‐‑‒–—―ー]?\d{4}[\s\-‐‑‒–—―ー]?\d{4}(?!\d)")


class CorrespondenceRefused(services.ProblemsError):
    """A message or correction request that cannot be made; each message says why, in Japanese."""


class CorrectionClosed(Exception):
    """The correction was answered or cancelled (or the resubmission does not belong to it)."""


# --------------------------------------------------------------------------
# What staff write must not repeat the resident's answers
# --------------------------------------------------------------------------


def _squeezed(text: str) -> str:
    return _IGNORED_CHARS.sub("", unicodedata.normalize("NFKC", text or "")).lower()


def _answer_strings(kind: str, value) -> list[str]:
    if kind == "date" and isinstance(value, str):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return []
        # As staff would write it: 1980-05-01, 1980/5/1, 1980/05/01, 1980年5月1日, 1980年05月01日.
        y, m, d = day.year, day.month, day.day
        return [value, f"{y}/{m}/{d}", f"{y}/{m:02d}/{d:02d}", f"{y}年{m}月{d}日", f"{y}年{m:02d}月{d:02d}日"]
    if kind == "location" and isinstance(value, dict):
        return [str(value.get("address") or ""), str(value.get("title") or "")]
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)] if abs(value) >= 1000 else []  # only numbers long enough to identify someone
    if isinstance(value, str):
        return [value]
    return []


def answers_in_text(*, application: Application, text: str) -> list[str]:
    """Labels of the application's questions whose answer appears in `text` (empty: none found)."""
    try:
        steps = procedure_spec_get(application.version).steps
    except SpecError:
        return []
    answers = application.answers if isinstance(application.answers, dict) else {}
    haystack = _squeezed(text)
    found = []
    for step in steps:
        # A sensitive date is a date of birth and the like; other dates (a pick-up day) may be written.
        checked = step.kind in _TEXT_KINDS or (step.kind == "date" and step.sensitive)
        if not step.is_input or not checked or answers.get(step.key) is None:
            continue
        minimum = _SENSITIVE_ANSWER_MIN_CHARS if step.sensitive else _ANSWER_MIN_CHARS
        for candidate in _answer_strings(step.kind, answers[step.key]):
            needle = _squeezed(candidate)
            if len(needle) >= minimum and needle in haystack:
                found.append(step.label or step.key)
                break
    return found


def _my_number_check_digit(body: str) -> int:
    """The check digit of a My Number (個人番号) from its first 11 digits (番号法施行令 第8条)."""
    total = sum(int(digit) * (n + 1 if n <= 6 else n - 5) for n, digit in enumerate(reversed(body), start=1))
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number_in_text(text: str) -> bool:
    """Whether `text` holds twelve digits that check out as a My Number (spaces and hyphens allowed)."""
    for match in _MY_NUMBER_CANDIDATE.finditer(unicodedata.normalize("NFKC", text or "")):
        digits = re.sub(r"\D", "", match.group())
        if _my_number_check_digit(digits[:11]) == int(digits[11]):
            return True
    return False


def personal_data_problems(*, applications, text: str, what: str) -> list[str]:
    """Why `text`, to be sent to a resident by LINE, may not go: it repeats an answer of one of
    `applications` (those the writer may see), or holds a My Number. Empty when it may go."""
    labels: list[str] = []
    for application in applications:
        labels += [label for label in answers_in_text(application=application, text=text) if label not in labels]
    problems = []
    if labels:
        problems.append(
            _(
                "%(what)sに申請の回答（%(labels)s）と同じ内容が含まれています。LINE で送る文には氏名・住所・"
                "電話番号などの個人情報を書けません。その部分を削除してください。"
            )
            % {"what": what, "labels": "、".join(f"「{label}」" for label in labels[:5])}
        )
    if my_number_in_text(text):
        problems.append(
            _(
                "%(what)sにマイナンバー（個人番号）と思われる12桁の数字が含まれています。"
                "LINE では送れません。削除してください。"
            )
            % {"what": what}
        )
    return problems


def _processable(application: Application, actor, refusal: str) -> Application:
    if not policy.can(actor, policy.PROCESS, application):
        raise CorrespondenceRefused([refusal])
    return Application.objects.select_for_update().select_related("procedure", "version", "status").get(
        pk=application.pk
    )


def _about(application: Application) -> dict:
    return {"procedure": application.procedure.name, "receipt_number": application.receipt_number}


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def _message_text(text: str) -> str:
    return "\n".join(line.rstrip() for line in (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")).strip()


@transaction.atomic
def application_message_send(
    *, application: Application, text: str, sender, client_key: str = "", now=None, request=None
) -> ApplicationMessage:
    """Store a staff message about the application and push it to the resident's channel.

    `client_key`: the form's one-time key; sending the same form again returns the first message.
    Raises CorrespondenceRefused (nothing written) for an empty, too long or personal text.
    """
    locked = _processable(application, sender, _("この申請について住民にメッセージを送る権限がありません。"))
    client_key = (client_key or "")[:40]
    if client_key:
        existing = ApplicationMessage.objects.filter(application=locked, client_key=client_key).first()
        if existing is not None:
            return existing
    text = _message_text(text)
    problems = []
    if not text:
        problems.append(_("メッセージを入力してください。"))
    elif len(text) > APPLICATION_MESSAGE_MAX:
        problems.append(
            _("メッセージは%(max)s文字以内にしてください（現在%(length)s文字）。")
            % {"max": APPLICATION_MESSAGE_MAX, "length": len(text)}
        )
    else:
        problems += personal_data_problems(applications=[locked], text=text, what=_("メッセージ"))
    if problems:
        raise CorrespondenceRefused(problems)
    delivered = notice_send(
        line_user_id=locked.line_user_id or "",
        messages=(Message("correspondence.staff_message", {**_about(locked), "text": text}),),
    )
    message = ApplicationMessage.objects.create(
        application=locked,
        direction=ApplicationMessage.Direction.TO_RESIDENT,
        text=text,
        sender=sender,
        delivery=ApplicationMessage.Delivery.QUEUED if delivered else ApplicationMessage.Delivery.UNREACHABLE,
        client_key=client_key,
        created_at=now or timezone.now(),
    )
    audit_record(actor=sender, action=audit_actions.APPLICATION_MESSAGE, obj=locked, request=request,
                 details={"receipt_number": locked.receipt_number[:40], "direction": message.direction,
                          "message": message.pk, "delivered": delivered})
    return message


def _resident_reply(line_user_id: str, text: str, now) -> tuple[Message, ...] | None:
    """Store `text` as the reply to the latest staff message within the window; None: not a reply."""
    if not line_user_id or not text.strip():
        return None
    since = now - timedelta(hours=settings.RESIDENT_REPLY_WINDOW_HOURS)
    last = (
        ApplicationMessage.objects.filter(
            application__line_user_id=line_user_id,
            direction=ApplicationMessage.Direction.TO_RESIDENT,
            # Only what reached the resident can be answered: a proxy entry's or a simulator's partner
            # id is shared by many applications and never gets pushes.
            delivery=ApplicationMessage.Delivery.QUEUED,
            created_at__gte=since,
            created_at__lte=now,
        )
        .select_related("application__procedure")
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        return None
    if catalog_build().match_keyword(text) is not None:
        return None  # a procedure's keyword starts that procedure, as always
    application = last.application
    message = ApplicationMessage.objects.create(
        application=application,
        direction=ApplicationMessage.Direction.FROM_RESIDENT,
        text=text.strip()[:RESIDENT_REPLY_MAX],
        delivery=ApplicationMessage.Delivery.RECEIVED,
        created_at=now,
    )
    services.application_needs_action_set(application=application, reason="message")
    audit_record(actor=None, action=audit_actions.APPLICATION_MESSAGE, obj=application,
                 details={"receipt_number": application.receipt_number[:40], "direction": message.direction,
                          "message": message.pk})
    return (Message("correspondence.reply_received", _about(application)),)


# --------------------------------------------------------------------------
# Correction requests
# --------------------------------------------------------------------------


def correction_status(application: Application) -> ApplicationStatus | None:
    """The procedure's 修正依頼中 status (by its stable code), if it has one."""
    return ApplicationStatus.objects.filter(procedure_id=application.procedure_id, code=CORRECTION_STATUS_CODE).first()


def correction_return_statuses(application: Application) -> list[ApplicationStatus]:
    """The statuses a resubmitted application may go back to: where 修正依頼中 may move."""
    waiting = correction_status(application)
    if waiting is None:
        return []
    return [
        transition.to_status
        for transition in StatusTransition.objects.filter(from_status=waiting)
        .select_related("to_status")
        .order_by("to_status__order", "to_status__id")
        if not transition.to_status.is_final
    ]


def correctable_steps(application: Application) -> list[tuple[str, str]]:
    """(key, label) of the questions of the version the application was made with."""
    try:
        steps = procedure_spec_get(application.version).steps
    except SpecError:
        return []
    return [(step.key, step.label or step.key) for step in steps if step.is_input]


def _correction_problems(application: Application, keys: list[str], reason: str, return_status_id) -> list[str]:
    problems = []
    steps = dict(correctable_steps(application))
    if not keys:
        problems.append(_("修正してもらう項目を1つ以上選んでください。"))
    for key in keys:
        if key not in steps:
            problems.append(_("「%(key)s」はこの申請の質問にありません。一覧から選んでください。") % {"key": str(key)[:40]})
    if not reason:
        problems.append(_("修正をお願いする理由を入力してください（住民に LINE で届きます）。"))
    elif len(reason) > CORRECTION_REASON_MAX:
        problems.append(
            _("理由は%(max)s文字以内にしてください（現在%(length)s文字）。") % {"max": CORRECTION_REASON_MAX, "length": len(reason)}
        )
    else:
        problems += personal_data_problems(applications=[application], text=reason, what=_("理由"))
    if not application.line_user_id or application.channel != Application.Channel.LINE:
        problems.append(_("この申請は LINE から受け付けたものではないため、LINE で修正をお願いできません。"))
    waiting = correction_status(application)
    if waiting is None:
        problems.append(
            _("この手続きには「修正依頼中」（コード %(code)s）の状態がありません。手続きの「申請の状態」に追加してください。")
            % {"code": CORRECTION_STATUS_CODE}
        )
        return problems
    if application.status_id != waiting.pk and not StatusTransition.objects.filter(
        from_status_id=application.status_id, to_status=waiting
    ).exists():
        problems.append(
            _(
                "「%(from)s」から「%(to)s」への変更が許可されていません。手続きの「状態の変更ルール」に"
                "「%(from)s → %(to)s」を追加してから、もう一度依頼してください。"
            )
            % {"from": application.status.label, "to": waiting.label}
        )
    allowed = {status.pk: status for status in correction_return_statuses(application)}
    if str(return_status_id or "").isdigit() and int(return_status_id) in allowed:
        pass
    elif allowed:
        problems.append(
            _("再提出後の状態を選んでください（選べる状態：%(allowed)s）。")
            % {"allowed": "、".join(f"「{status.label}」" for status in allowed.values())}
        )
    else:
        problems.append(
            _("「%(status)s」から変更できる状態がありません。手続きの「状態の変更ルール」を確認してください。")
            % {"status": waiting.label}
        )
    if CorrectionRequest.objects.filter(application=application, state=CorrectionRequest.State.OPEN).exists():
        problems.append(
            _("この申請には、まだ再提出されていない修正依頼があります。新しく依頼するには、先にそれを取り消してください。")
        )
    return problems


def _correction_notice(correction: CorrectionRequest, application: Application) -> tuple[Message, ...]:
    button = Action(
        "action.correct",
        {},
        Event(type="command", name=COMMAND_CORRECTION_START, value=f"{correction.pk}:{correction.token}"),
    )
    return (
        Message("correspondence.correction_notice", {**_about(application), "reason": correction.reason}),
        Message("correspondence.correction_button", {}, layout="buttons", actions=(button,)),
    )


@transaction.atomic
def correction_request_create(
    *, application: Application, keys, reason: str, return_status, actor, now=None, request=None
) -> CorrectionRequest:
    """Ask the resident to answer `keys` again: 修正依頼中, a notice with a 修正する button.

    `return_status`: the status (or its id) the application goes to once resubmitted. Raises
    CorrespondenceRefused with every problem (nothing written, nothing sent).
    """
    locked = _processable(application, actor, _("この申請の修正を依頼する権限がありません。"))
    keys = list(dict.fromkeys(str(key) for key in keys or ()))
    reason = _message_text(reason)
    return_status_id = return_status.pk if isinstance(return_status, ApplicationStatus) else return_status
    problems = _correction_problems(locked, keys, reason, return_status_id)
    if problems:
        raise CorrespondenceRefused(problems)
    waiting = correction_status(locked)
    if locked.status_id != waiting.pk:
        try:
            services.application_status_change_by_staff(
                application=locked, to_status=waiting, actor=actor, note=_("修正依頼"), request=request
            )
        except WorkflowError as error:
            raise CorrespondenceRefused([error.message]) from None
    correction = CorrectionRequest.objects.create(
        application=locked,
        keys=keys,
        reason=reason,
        return_status_id=int(return_status_id),
        requested_by=actor,
        token=secrets.token_urlsafe(18),
        created_at=now or timezone.now(),
    )
    correction.notified = notice_send(line_user_id=locked.line_user_id, messages=_correction_notice(correction, locked))
    correction.save(update_fields=["notified"])
    audit_record(actor=actor, action=audit_actions.APPLICATION_CORRECTION_REQUEST, obj=locked, request=request,
                 details={"receipt_number": locked.receipt_number[:40], "correction": correction.pk, "keys": keys,
                          "notified": correction.notified})
    return correction


@transaction.atomic
def correction_cancel(*, correction: CorrectionRequest, actor, now=None, request=None) -> CorrectionRequest:
    """Withdraw an open correction request; its 修正する button then tells the resident so."""
    application = _processable(correction.application, actor, _("この修正依頼を取り消す権限がありません。"))
    correction = CorrectionRequest.objects.select_for_update().get(pk=correction.pk, application=application)
    if correction.state != CorrectionRequest.State.OPEN:
        raise CorrespondenceRefused(
            [_("この修正依頼は「%(state)s」のため、取り消せません。") % {"state": correction.get_state_display()}]
        )
    correction.state = CorrectionRequest.State.CANCELLED
    correction.cancelled_at = now or timezone.now()
    correction.cancelled_by = actor
    correction.save(update_fields=["state", "cancelled_at", "cancelled_by"])
    audit_record(actor=actor, action=audit_actions.APPLICATION_CORRECTION_CANCEL, obj=application, request=request,
                 details={"receipt_number": application.receipt_number[:40], "correction": correction.pk})
    return correction


@transaction.atomic
def application_resubmit(
    *, correction: CorrectionRequest, answers: dict, computed: dict, token: str, line_user_id: str, now=None
) -> ApplicationRevision:
    """The resident's corrected answers: keep the old ones (a revision), store the new, return the status.

    Raises CorrectionClosed when the correction is no longer open, or the token or resident differ.
    """
    correction = CorrectionRequest.objects.select_for_update().select_related("return_status").get(pk=correction.pk)
    application = Application.objects.select_for_update().select_related("procedure").get(pk=correction.application_id)
    if (
        correction.state != CorrectionRequest.State.OPEN
        or not constant_time_compare(correction.token, token or "")
        or not line_user_id
        or application.line_user_id != line_user_id
    ):
        raise CorrectionClosed(correction.pk)
    now = now or timezone.now()
    revision = ApplicationRevision.objects.create(
        application=application,
        correction=correction,
        old_answers=application.answers,
        old_computed=application.computed,
        new_answers=answers,
        new_computed=computed,
        created_at=now,
    )
    application.answers, application.computed = answers, computed
    application.save(update_fields=["answers", "computed"])
    correction.state, correction.answered_at = CorrectionRequest.State.ANSWERED, now
    correction.save(update_fields=["state", "answered_at"])
    if application.status_id != correction.return_status_id:
        try:
            application_status_change(
                application=application, to_status=correction.return_status, actor=None, note=_("修正された申請の再提出")
            )
        except WorkflowError:
            # Staff removed the rule after asking: the answers are kept, staff move the status by hand.
            logger.warning("resubmitted application %s stays in its status: no transition", application.pk)
    services.application_needs_action_set(application=application, reason="resubmitted")
    changed = sorted(key for key in set(revision.old_answers) | set(answers)
                     if revision.old_answers.get(key) != answers.get(key))
    audit_record(actor=None, action=audit_actions.APPLICATION_RESUBMIT, obj=application,
                 details={"receipt_number": application.receipt_number[:40], "correction": correction.pk,
                          "keys": changed})
    application_resubmitted.send(sender=Application, application=application, changed_keys=changed, at=now)
    return revision


# --------------------------------------------------------------------------
# The resident's side, before and after the engine (procedures.services.conversation_handle)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Intercepted:
    """Either the answer (`messages`, the engine is not asked) or the event the engine gets instead."""

    messages: tuple[Message, ...] = ()
    event: Event | None = None
    pinned_version_id: int | None = None


def _correction_start(line_user_id: str, value) -> Intercepted:
    correction_id, _colon, token = str(value or "").partition(":")
    correction = None
    if correction_id.isascii() and correction_id.isdigit() and line_user_id:
        correction = (
            CorrectionRequest.objects.filter(pk=int(correction_id), application__line_user_id=line_user_id)
            .select_related("application__procedure")
            .first()
        )
    if correction is None or not constant_time_compare(correction.token, token):
        return Intercepted(messages=(Message("correspondence.correction_not_found"),))
    application = correction.application
    if correction.state == CorrectionRequest.State.ANSWERED:
        return Intercepted(messages=(Message("correspondence.correction_answered", _about(application)),))
    if correction.state == CorrectionRequest.State.CANCELLED:
        return Intercepted(messages=(Message("correspondence.correction_cancelled", _about(application)),))
    data = {
        "correction_id": correction.pk,
        "token": correction.token,
        "procedure_id": application.procedure_id,
        "version_id": application.version_id,
        "receipt_number": application.receipt_number,
        "answers": application.answers if isinstance(application.answers, dict) else {},
        "keys": list(correction.keys or []),
    }
    return Intercepted(event=Event(type=CORRECTION_EVENT, data=data), pinned_version_id=application.version_id)


def resident_input_intercept(*, line_user_id: str, event: Event, state: dict | None, now) -> Intercepted | None:
    """What this module does with a resident's input before the engine; None: the engine takes it as it is."""
    if event.type == "command" and event.name == COMMAND_CORRECTION_START:
        return _correction_start(line_user_id, event.value)
    in_procedure = isinstance(state, dict) and isinstance(state.get("session"), dict)
    if event.type == "text" and not in_procedure:
        reply = _resident_reply(line_user_id, event.text or "", now)
        if reply is not None:
            return Intercepted(messages=reply)
    return None


def resubmission_apply(*, effect: Resubmit, line_user_id: str, now=None) -> tuple[Message, ...] | None:
    """Apply the engine's Resubmit; None when done, else the message that replaces the engine's thanks."""
    correction = CorrectionRequest.objects.filter(pk=effect.correction_id).select_related("application").first()
    if correction is None:
        return (Message("correspondence.correction_not_found"),)
    try:
        with transaction.atomic():
            application_resubmit(
                correction=correction, answers=effect.answers, computed=effect.computed, token=effect.token,
                line_user_id=line_user_id, now=now,
            )
    except CorrectionClosed:
        return (Message("correspondence.correction_closed_meanwhile", _about(correction.application)),)
    return None
