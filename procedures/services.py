"""Writes for procedures: publishing, drafts, templates, applications, conversations."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions as audit_actions
from audit.services import audit_record
from procedures import engine
from procedures.engine.types import Event, Message, Resubmit, Submit
from procedures.models import (
    STEP_MODELS,
    Application,
    ApplicationStatus,
    ApplicationStatusChange,
    ComputedValue,
    ConversationSession,
    Procedure,
    ProcedureVersion,
    ReceiptCounter,
    StaffField,
    Step,
    StepChoice,
)
from procedures.notifications import application_mail_enqueue
from procedures.selectors import catalog_build, version_spec_data
from procedures.signals import application_submitted
from procedures.spec import (
    SPEC_FORMAT,
    SPEC_FORMAT_VERSION,
    ProcedureSpec,
    SpecError,
    parse_spec,
    spec_to_dict,
    validate_spec,
)
from procedures.texts import problem_message
from procedures.workflow import (
    WorkflowError,
    application_status_change,
    initial_status_subquery,
    procedure_initial_status,
    resident_status_reply,
)
from residents.profile_targets import version_profile_problems
from staff import policy


class ProblemsError(Exception):
    """Raised with every problem found, each a sentence a staff member can act on."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


# --------------------------------------------------------------------------
# Publishing and drafts
# --------------------------------------------------------------------------


def version_problems(version: ProcedureVersion) -> list[str]:
    """Every reason this version cannot be published, in words; empty when it can."""
    data = version_spec_data(version)
    try:
        spec = parse_spec(data)
    except SpecError as error:
        return [problem_message(problem, data) for problem in error.problems]
    return [problem_message(problem, data) for problem in validate_spec(spec)] + version_profile_problems(spec, data)


@transaction.atomic
def version_publish(*, version: ProcedureVersion, user=None) -> ProcedureVersion:
    version = ProcedureVersion.objects.select_for_update().select_related("procedure").get(pk=version.pk)
    if not version.is_draft:
        raise ProblemsError([_("このバージョンはすでに公開されています。")])
    problems = version_problems(version)
    if problems:
        raise ProblemsError(problems)
    spec = parse_spec(version_spec_data(version))
    version.spec = spec_to_dict(spec)
    version.status = ProcedureVersion.Status.PUBLISHED
    version.published_at = timezone.now()
    version.published_by = user if user is not None and user.is_authenticated else None
    version.save()
    procedure = version.procedure
    procedure.current_version = version
    procedure.is_open = True
    procedure.save(update_fields=["current_version", "is_open", "updated_at"])
    audit_record(actor=user, action=audit_actions.PROCEDURE_PUBLISH, obj=procedure,
                 details={"version_id": version.pk, "number": version.number})
    return version


@transaction.atomic
def procedure_close(*, procedure: Procedure, actor=None) -> None:
    """Stop accepting: residents can no longer start it and running conversations end politely."""
    Procedure.objects.filter(pk=procedure.pk).update(is_open=False, updated_at=timezone.now())
    audit_record(actor=actor, action=audit_actions.PROCEDURE_CLOSE, obj=procedure)


@transaction.atomic
def procedure_reopen(*, procedure: Procedure, actor=None) -> bool:
    """Accept again on the current published version; False when nothing was ever published."""
    reopened = bool(
        Procedure.objects.filter(pk=procedure.pk, current_version__isnull=False).update(
            is_open=True, updated_at=timezone.now()
        )
    )
    if reopened:
        audit_record(actor=actor, action=audit_actions.PROCEDURE_REOPEN, obj=procedure)
    return reopened


@transaction.atomic
def draft_get_or_create(*, procedure: Procedure) -> ProcedureVersion:
    """The procedure's draft; a new one starts as a copy of the published version (or empty)."""
    procedure = Procedure.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=procedure.pk)
    draft = procedure.versions.filter(status=ProcedureVersion.Status.DRAFT).first()
    if draft is not None:
        return draft
    draft = _version_create(procedure)
    source = procedure.current_version
    if source is not None:
        _version_fill(draft, parse_spec(version_spec_data(source)))
    return draft


@transaction.atomic
def version_restore(*, version: ProcedureVersion) -> ProcedureVersion:
    """Make an earlier published version the content of the draft (the draft's steps are replaced)."""
    procedure = version.procedure
    Procedure.objects.select_for_update().get(pk=procedure.pk)
    source_spec = parse_spec(version_spec_data(version))
    draft = procedure.versions.filter(status=ProcedureVersion.Status.DRAFT).first()
    if draft is None:
        draft = _version_create(procedure)
    else:
        draft.steps.all().delete()
        draft.computed_values.all().delete()
    draft.restored_from = version
    draft.save(update_fields=["restored_from"])
    _version_fill(draft, source_spec)
    return draft


@transaction.atomic
def step_move(*, version: ProcedureVersion, step_id: int, direction: str) -> bool:
    """Move a draft step one place up or down; positions are renumbered 10, 20, 30... Returns whether it moved."""
    version = ProcedureVersion.objects.select_for_update().get(pk=version.pk)
    if not version.is_draft:
        raise ProblemsError([_("公開済みのバージョンは変更できません。下書きを編集してください。")])
    rows = list(Step.objects.filter(version=version).order_by("position", "id").values_list("id", "position"))
    ids = [row_id for row_id, _position in rows]
    new_ids = order_after_move(ids, step_id, direction)
    current = dict(rows)
    for index, row_id in enumerate(new_ids, start=1):
        if current[row_id] != index * 10:
            Step.objects.filter(pk=row_id).update(position=index * 10)
    return new_ids != ids


def order_after_move(ids: list[int], moved: int, direction: str) -> list[int]:
    """The step ids after moving `moved` one place "up" or "down" (unchanged at either end)."""
    ids = list(ids)
    if moved not in ids:
        return ids
    index = ids.index(moved)
    other = index - 1 if direction == "up" else index + 1 if direction == "down" else index
    if 0 <= other < len(ids) and other != index:
        ids[index], ids[other] = ids[other], ids[index]
    return ids


def _version_create(procedure: Procedure) -> ProcedureVersion:
    last = procedure.versions.aggregate(last=Max("number"))["last"] or 0
    return ProcedureVersion.objects.create(procedure=procedure, number=last + 1)


def _version_fill(version: ProcedureVersion, spec: ProcedureSpec) -> None:
    """Create the draft's step rows from a spec (used by restore, new drafts and import)."""
    for position, step in enumerate(spec.steps, start=1):
        model = STEP_MODELS[step.kind]
        row = model.objects.create(
            version=version,
            position=position * 10,
            key=step.key,
            label=step.label,
            help_text=step.help_text,
            required=step.required,
            sensitive=step.sensitive,
            condition=step.condition,
            profile_target=step.profile_target,
            **model.fields_from_spec_options(step.options),
        )
        StepChoice.objects.bulk_create(
            StepChoice(step=row, position=index, value=choice.value, label=choice.label, amount=choice.amount)
            for index, choice in enumerate(step.choices, start=1)
        )
    for position, item in enumerate(spec.computed, start=1):
        ComputedValue.objects.create(
            version=version,
            position=position,
            key=item.key,
            label=item.label,
            unit=item.unit,
            constant=item.constant,
            terms=[{"step": term.step, "factor": term.factor} for term in item.terms],
        )


# --------------------------------------------------------------------------
# Templates shared between cities (docs/procedure-format.md)
# --------------------------------------------------------------------------


def procedure_export_data(*, procedure: Procedure, version: ProcedureVersion | None = None) -> dict:
    procedure = Procedure.objects.select_related("current_version").get(pk=procedure.pk)
    version = version or procedure.current_version or procedure.draft
    if version is None:
        raise ProblemsError([_("書き出せるバージョンがありません。")])
    data = dict(version_spec_data(version))
    data.pop("procedure_id", None)
    data.pop("version_id", None)
    return {"format": SPEC_FORMAT, "format_version": SPEC_FORMAT_VERSION, "procedure": data}


def procedure_import(*, raw: bytes, max_bytes: int, department=None, receipt_prefix: str = "") -> Procedure:
    """Create a new procedure with a draft from a template file; nothing is written when it has a problem."""
    if len(raw) > max_bytes:
        raise ProblemsError(
            [_("ファイルが大きすぎます（%(size)s バイト）。上限は %(max)s バイトです。") % {"size": len(raw), "max": max_bytes}]
        )
    try:
        envelope = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ProblemsError([_("ファイルが UTF-8 のテキストではありません。")]) from None
    except RecursionError:
        raise ProblemsError([_("JSON の入れ子が深すぎます。")]) from None
    except json.JSONDecodeError as error:
        raise ProblemsError(
            [_("JSON として読めません（%(line)s 行 %(column)s 文字目: %(reason)s）。") % {
                "line": error.lineno, "column": error.colno, "reason": error.msg}]
        ) from None
    if not isinstance(envelope, dict) or envelope.get("format") != SPEC_FORMAT:
        raise ProblemsError([_("手続きのテンプレートではありません（format が %(format)s ではありません）。") % {"format": SPEC_FORMAT}])
    if envelope.get("format_version") != SPEC_FORMAT_VERSION:
        raise ProblemsError(
            [_("このテンプレートの形式の版（%(got)s）には対応していません。対応している版: %(ok)s") % {
                "got": envelope.get("format_version"), "ok": SPEC_FORMAT_VERSION}]
        )
    data = envelope.get("procedure")
    if not isinstance(data, dict):
        raise ProblemsError([_("procedure の内容がありません。")])
    data = {**data, "procedure_id": None, "version_id": None}
    if receipt_prefix:
        data["receipt_prefix"] = receipt_prefix
    try:
        spec = parse_spec(data)
    except SpecError as error:
        raise ProblemsError([problem_message(problem, data) for problem in error.problems]) from None
    problems = [problem_message(problem, data) for problem in validate_spec(spec)]
    if not spec.receipt_prefix:
        problems.append(_("受付番号の接頭辞（receipt_prefix）がありません。"))
    elif Procedure.objects.filter(receipt_prefix=spec.receipt_prefix).exists():
        problems.append(
            _("受付番号の接頭辞「%(prefix)s」はすでに使われています。別の接頭辞を指定してください。") % {"prefix": spec.receipt_prefix}
        )
    if problems:
        raise ProblemsError(problems)
    with transaction.atomic():
        procedure = Procedure.objects.create(
            name=spec.name,
            description=spec.description,
            keywords="\n".join(spec.keywords),
            receipt_prefix=spec.receipt_prefix,
            department=department,
        )
        _version_fill(_version_create(procedure), spec)
    return procedure


# --------------------------------------------------------------------------
# Applications and conversations
# --------------------------------------------------------------------------


@transaction.atomic
def application_submit(
    *,
    submit: Submit,
    line_user_id: str,
    resident=None,
    is_test: bool = False,
    entered_by=None,
    channel: str = "",
    now=None,
) -> Application:
    """Create the application for a Submit effect; a repeated submission returns the first one.

    `entered_by`: the staff member who typed it in for a resident (代理入力). Such an application
    has no LINE user, so its submission key carries the staff member instead (engine session ids
    are only unique per conversation partner).
    `channel`: how a resident's application came in when it was not their LINE conversation (e.g.
    a campaign's yes button); set before application_submitted is sent, so listeners see it.
    """
    if entered_by is not None and is_test:
        raise ValueError("an application entered for a resident is never a test application")
    submission_key = submit.submission_key
    if entered_by is not None:
        line_user_id = ""
        submission_key = f"staff-{entered_by.pk}:{submission_key}"
    existing = Application.objects.filter(line_user_id=line_user_id, submission_key=submission_key).first()
    if existing is not None:
        return existing
    now = now or timezone.now()
    version = (
        ProcedureVersion.objects.select_related("procedure__department")  # the department: for its mail
        .defer("spec")
        .annotate(initial_status_id=initial_status_subquery())
        .get(pk=submit.version_id)
    )
    procedure = version.procedure
    receipt_number = _receipt_number_next(procedure=procedure, year=timezone.localtime(now).year, is_test=is_test)
    status_id = version.initial_status_id or procedure_initial_status(procedure=procedure).pk
    if is_test:
        channel = Application.Channel.SIMULATOR
    elif entered_by is not None:
        channel = Application.Channel.PROXY
    else:
        channel = channel or Application.Channel.LINE
    # A new application waits for staff in the inbox, unless nobody has to look at it: a test, a
    # procedure that only records (受信設定), or a campaign's yes that staff themselves asked for.
    awaits_staff = not is_test and procedure.needs_staff_review and channel != Application.Channel.CAMPAIGN
    try:
        with transaction.atomic():
            application = Application.objects.create(
                procedure=procedure,
                version=version,
                receipt_number=receipt_number,
                resident=resident,
                line_user_id=line_user_id,
                submission_key=submission_key,
                answers=submit.answers,
                computed=submit.computed,
                is_test=is_test,
                submitted_at=now,
                status_id=status_id,
                needs_action=awaits_staff,
                channel=channel,
                entered_by=entered_by,
            )
    except IntegrityError:
        # Only a concurrent identical submission is "already submitted"; any other clash is a bug to surface.
        existing = Application.objects.filter(line_user_id=line_user_id, submission_key=submission_key).first()
        if existing is None:
            raise
        return existing
    if entered_by is not None:
        audit_record(actor=entered_by, action=audit_actions.APPLICATION_PROXY_ENTRY, obj=application,
                     details={"receipt_number": application.receipt_number})
    if awaits_staff:
        application_mail_enqueue(application=application)
    application_submitted.send(sender=Application, application=application)
    return application


def _receipt_number_next(*, procedure: Procedure, year: int, is_test: bool) -> str:
    counter, _created = ReceiptCounter.objects.select_for_update().get_or_create(
        procedure=procedure, year=year, is_test=is_test
    )
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    number = f"{procedure.receipt_prefix}-{year}-{counter.last_number:06d}"
    return f"TEST-{number}" if is_test else number


@dataclass(frozen=True)
class ConversationReply:
    messages: tuple[Message, ...]
    applications: tuple[Application, ...]


# The engine leaves the receipt number of a completion to the caller, who creates the application.
COMPLETION_CODE = "procedure.completed"


@transaction.atomic
def conversation_handle(
    *,
    line_user_id: str,
    event: Event,
    now=None,
    resident=None,
    is_test: bool = False,
    entered_by=None,
    extra_specs: tuple[ProcedureSpec, ...] = (),
) -> ConversationReply:
    """Run one resident input through the engine and apply its effects in one transaction.

    `entered_by`: a staff member is typing in a resident's application (代理入力, see application_submit).
    """
    now = now or timezone.now()
    session = _conversation_lock(line_user_id)
    # Built-in words and buttons (「申請状況」, withdrawal) are answered before the engine, which
    # they leave untouched: a procedure in progress continues with the next answer.
    status_reply = resident_status_reply(line_user_id=line_user_id, event=event, state=session.state)
    if status_reply is not None:
        return ConversationReply(messages=status_reply, applications=())
    # Imported here: correspondence builds on this module's services (needs-action, status changes).
    from procedures import correspondence

    pinned = []
    # A reply to staff, or the 修正する button (which becomes the engine's correction event).
    intercepted = correspondence.resident_input_intercept(
        line_user_id=line_user_id, event=event, state=session.state, now=now
    )
    if intercepted is not None and intercepted.event is None:
        return ConversationReply(messages=intercepted.messages, applications=())
    if intercepted is not None:
        event = intercepted.event
        pinned.append(intercepted.pinned_version_id)
    current = (session.state or {}).get("session") or {}
    if isinstance(current.get("version_id"), int):
        pinned.append(current["version_id"])
    catalog = catalog_build(pinned_version_ids=pinned, extra_specs=extra_specs)
    result = engine.step(catalog, session.state, event, now)
    applications = []
    replaced = None
    for effect in result.effects:
        if isinstance(effect, Submit):
            applications.append(
                application_submit(
                    submit=effect, line_user_id=line_user_id, resident=resident, is_test=is_test,
                    entered_by=entered_by, now=now,
                )
            )
        elif isinstance(effect, Resubmit):
            replaced = correspondence.resubmission_apply(effect=effect, line_user_id=line_user_id, now=now)
    messages = replaced or tuple(_with_receipt_numbers(result.messages, applications))
    session.state = result.state
    session.save(update_fields=["state", "updated_at"])
    return ConversationReply(messages=messages, applications=tuple(applications))


def _conversation_lock(line_user_id: str) -> ConversationSession:
    """The resident's session row, locked until the transaction ends (created on first contact)."""
    locked = ConversationSession.objects.select_for_update()
    session = locked.filter(line_user_id=line_user_id).first()
    if session is None:
        ConversationSession.objects.get_or_create(line_user_id=line_user_id)
        session = locked.get(line_user_id=line_user_id)
    return session


def _with_receipt_numbers(messages, applications):
    receipts = iter([application.receipt_number for application in applications])
    for message in messages:
        if message.code == COMPLETION_CODE:
            yield replace(message, params={**message.params, "receipt_number": next(receipts, "")})
        else:
            yield message


# --------------------------------------------------------------------------
# The staff inbox: assignment, needs-action (要対応), 管理項目, bulk actions
# --------------------------------------------------------------------------

NEEDS_ACTION_REASON = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class InboxRefused(ProblemsError):
    """A change of the inbox the policy or the data does not allow; each message says why."""


def _processable(application: Application, actor, refusal: str) -> Application:
    """The application locked for the change, after checking that `actor` may process it."""
    if not policy.can(actor, policy.PROCESS, application):
        raise InboxRefused([refusal])
    return Application.objects.select_for_update().select_related("procedure").get(pk=application.pk)


@transaction.atomic
def application_assign(*, application: Application, assignee, actor, request=None) -> bool:
    """Make `assignee` (None: nobody) the staff member handling the application; whether it changed.

    Both the actor and the assignee must be allowed to process it (staff.policy). Nothing else of
    the application changes (its 要対応 stays as it is).
    """
    locked = _processable(application, actor, _("この申請の担当を変更する権限がありません。"))
    if assignee is not None and not policy.can(assignee, policy.PROCESS, locked):
        raise InboxRefused(
            [_("%(name)s さんはこの申請を処理できないため、担当にできません。") % {"name": assignee.get_username()}]
        )
    previous = locked.assignee_id
    new = assignee.pk if assignee is not None else None
    if previous == new:
        return False
    Application.objects.filter(pk=locked.pk).update(assignee_id=new)
    application.assignee_id = new
    audit_record(actor=actor, action=audit_actions.APPLICATION_ASSIGN, obj=locked,
                 details={"receipt_number": locked.receipt_number[:40], "from": previous, "to": new}, request=request)
    return True


@transaction.atomic
def application_needs_action_set(*, application: Application, reason: str) -> bool:
    """Mark the application 要対応 (something waits for staff); whether it changed.

    `reason`: a short code of what happened (e.g. "message", "resubmitted"), recorded for the timeline.
    """
    if not NEEDS_ACTION_REASON.match(reason or ""):
        raise ValueError(f"needs-action reason must be a short code, got {reason!r}")
    changed = Application.objects.filter(pk=application.pk, needs_action=False).update(needs_action=True)
    application.needs_action = True
    if changed:
        audit_record(actor=None, action=audit_actions.APPLICATION_NEEDS_ACTION, obj=application,
                     details={"receipt_number": application.receipt_number[:40], "needs_action": True,
                              "reason": reason})
    return bool(changed)


@transaction.atomic
def application_needs_action_clear(*, application: Application, actor, reason: str = "handled", request=None) -> bool:
    """Mark the application handled (対応済み); whether it changed. `actor` None: the system did it."""
    if actor is not None:
        _processable(application, actor, _("この申請を対応済みにする権限がありません。"))
    changed = Application.objects.filter(pk=application.pk, needs_action=True).update(needs_action=False)
    application.needs_action = False
    if changed:
        audit_record(actor=actor, action=audit_actions.APPLICATION_NEEDS_ACTION, obj=application,
                     details={"receipt_number": application.receipt_number[:40], "needs_action": False,
                              "reason": reason},
                     request=request)
    return bool(changed)


@transaction.atomic
def application_status_change_by_staff(
    *, application: Application, to_status, actor, note: str = "", request=None
) -> ApplicationStatusChange:
    """A staff member moves the application to another status (workflow rules apply); that handles it (対応済み)."""
    _processable(application, actor, _("この申請の状態を変更する権限がありません。"))
    change = application_status_change(
        application=application, to_status=to_status, actor=actor, note=note, request=request
    )
    application_needs_action_clear(application=application, actor=actor, reason="status_change", request=request)
    return change


@transaction.atomic
def application_staff_values_update(*, application: Application, values: dict, actor, request=None) -> list[str]:
    """Set the 管理項目 in `values` (key -> what staff entered; "" empties it); the keys that changed.

    Every value is checked first: with any problem nothing is written and InboxRefused lists them
    all. The audit log gets the changed keys, never the values.
    """
    locked = _processable(application, actor, _("この申請の管理項目を変更する権限がありません。"))
    fields = {field.key: field for field in StaffField.objects.filter(procedure_id=locked.procedure_id)}
    problems = []
    unknown = [str(key)[:40] for key in values if key not in fields]
    if unknown:
        problems.append(_("この手続きにない管理項目です：%(keys)s") % {"keys": "、".join(unknown)})
    parsed = {}
    for key, raw in values.items():
        field = fields.get(key)
        if field is None:
            continue
        try:
            parsed[key] = field.parse(raw)
        except ValidationError as error:
            problems.append(_("「%(label)s」：%(problem)s") % {"label": field.label, "problem": " ".join(error.messages)})
    if problems:
        raise InboxRefused(problems)
    current = dict(locked.staff_values) if isinstance(locked.staff_values, dict) else {}
    changed = []
    for key, value in parsed.items():
        if value is None:
            if current.pop(key, None) is not None:
                changed.append(key)
        elif current.get(key) != value or type(current.get(key)) is not type(value):
            current[key] = value
            changed.append(key)
    if changed:
        Application.objects.filter(pk=locked.pk).update(staff_values=current)
        application.staff_values = current
        audit_record(actor=actor, action=audit_actions.APPLICATION_STAFF_FIELDS, obj=locked,
                     details={"receipt_number": locked.receipt_number[:40], "keys": changed}, request=request)
    return changed


@dataclass(frozen=True)
class BulkResult:
    """What a bulk action did to one application: done, or refused with the reason."""

    receipt_number: str
    done: bool
    message: str = ""


def applications_bulk(*, applications, change) -> list[BulkResult]:
    """Apply `change(application) -> bool (changed)` to each application in its own transaction.

    A refusal (InboxRefused, a workflow rule) is reported for that application; the others go on.
    """
    results = []
    for application in applications:
        try:
            with transaction.atomic():
                changed = change(application)
        except (InboxRefused, WorkflowError) as error:
            message = " ".join(error.messages) if isinstance(error, InboxRefused) else error.message
            results.append(BulkResult(application.receipt_number, False, message))
        else:
            results.append(BulkResult(application.receipt_number, True, "" if changed else _("変更なし")))
    return results


def applications_assign_bulk(*, applications, assignee, actor, request=None) -> list[BulkResult]:
    return applications_bulk(
        applications=applications,
        change=lambda application: application_assign(
            application=application, assignee=assignee, actor=actor, request=request
        ),
    )


def applications_needs_action_clear_bulk(*, applications, actor, request=None) -> list[BulkResult]:
    return applications_bulk(
        applications=applications,
        change=lambda application: application_needs_action_clear(
            application=application, actor=actor, request=request
        ),
    )


def applications_status_change_bulk(*, applications, status_code: str, actor, request=None) -> list[BulkResult]:
    """Move each application to its procedure's status with `status_code` where its workflow allows it."""

    def change(application):
        target = ApplicationStatus.objects.filter(procedure_id=application.procedure_id, code=status_code).first()
        if target is None:
            raise InboxRefused([_("この手続きにはその状態がありません。")])
        application_status_change_by_staff(application=application, to_status=target, actor=actor, request=request)
        return True

    return applications_bulk(applications=applications, change=change)
