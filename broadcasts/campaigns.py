"""Push-and-confirm benefit campaigns (the Soja model): writes.

Staff create a Campaign (question, yes/no labels, deadline, the procedure whose application "yes"
completes, that procedure's answers fixed in advance), then import a CSV of the eligible people
(one matching key per row: a resident attribute such as an eligibility number, or the LINE user
id). Sending pushes each matched, following resident the question as a confirm template whose two
buttons are signed postbacks carrying "campaign:<recipient id>:<token>"; the random token is
stored only hashed and replaced when a reminder is pushed. The resident's tap comes back through
the LINE inbox (messaging.services) to `campaign_postback_reply`, which answers it here without
the conversation engine: "yes" creates a completed application with the fixed answers, "no"
records the decline. A tap that is late, repeated, someone else's or not ours changes nothing
and gets a reply saying why.

Matching keys are personal-ish: they are stored on the recipient row (and shown to the staff of
the campaign's department) but never logged or sent to LINE; messages to residents carry the
campaign's fixed question, a status and a receipt number only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from audit import actions as audit_actions
from audit.exports import BOM, neutralise
from audit.services import audit_record
from broadcasts.campaign_selectors import RESULT_HEADERS, campaign_result_rows
from broadcasts.models import CAMPAIGN_MATCH_VALUE_MAX, Campaign, CampaignRecipient
from procedures.engine.computed import compute
from procedures.engine.conditions import applies, prune
from procedures.engine.handlers import get_handler
from procedures.engine.types import Action, Event, Message, Submit
from procedures.models import Application, ApplicationStatus, StatusTransition
from procedures.selectors import procedure_spec_get
from procedures.services import ProblemsError, application_submit
from procedures.spec import ProcedureSpec, SpecError
from procedures.texts import render_message
from procedures.workflow import WorkflowError, application_status_change, procedure_initial_status
from residents.models import Attribute, Resident, ResidentAttributeValue
from staff import policy

# The postback commands of the two buttons; their value is "campaign:<recipient id>:<token>".
COMMAND_YES = "campaign_yes"
COMMAND_NO = "campaign_no"
ANSWER_COMMANDS = {COMMAND_YES: CampaignRecipient.Answer.YES, COMMAND_NO: CampaignRecipient.Answer.NO}
VALUE_PREFIX = "campaign"
COMPLETED_STATUS_CODE = "completed"  # the default status of a finished application (DEFAULT_STATUSES)

CSV_MAX_BYTES = 5 * 1024 * 1024
CSV_MAX_ROWS = 50_000
PROBLEMS_LISTED = 50  # an import lists this many row problems (and counts the rest)
PUSH_BATCH = 100

LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
# {…}, ｛…｝, %(…)s, %s: what would look like a personal placeholder in a text everyone receives.
_PLACEHOLDER = re.compile(r"[{｛][^}｝]*[}｝]|%\(|%[sd]")
_LINE_USER_ID_HEADERS = ("LINE ユーザーID", "LINEユーザーID", "line_user_id")


class CampaignRefused(ProblemsError):
    """A campaign change that cannot be made; each message says why (nothing was written)."""


# --------------------------------------------------------------------------
# What a campaign needs before it can be sent
# --------------------------------------------------------------------------


def _text_problems(text: str) -> list[str]:
    if _PLACEHOLDER.search(text or ""):
        return [_("差し込み（{…} や %(…)s）は使えません。全員に同じ文面が届きます。個人情報は書かないでください。")]
    return []


def fixed_answers_problems(spec: ProcedureSpec, answers) -> list[str]:
    """Every reason `answers` cannot complete an application of `spec`, in Japanese; empty when it can."""
    if not isinstance(answers, dict):
        return [_("固定の回答は、ステップのキーと回答の組（JSON のオブジェクト）で入力してください。")]
    steps = {step.key: step for step in spec.steps}
    problems = []
    today = timezone.localdate()
    for key, value in answers.items():
        step = steps.get(key)
        if step is None or not step.is_input:
            problems.append(
                _("「%(key)s」は、この手続きの公開中のバージョンにある入力ステップのキーではありません。")
                % {"key": key}
            )
            continue
        invalid = get_handler(step.kind).validate(step, value, today)
        if invalid is not None:
            problems.append(
                _("「%(label)s」（%(key)s）：%(problem)s")
                % {"label": step.label, "key": key, "problem": render_message(Message(invalid.code, invalid.params))}
            )
    if problems:
        return problems
    kept, _removed = prune(spec, answers)
    for step in spec.steps:
        if step.is_input and step.required and step.key not in kept and applies(spec, step.key, kept):
            problems.append(
                _("必須のステップ「%(label)s」（%(key)s）の回答がありません。") % {"label": step.label, "key": step.key}
            )
    return problems


def _procedure_problems(campaign: Campaign) -> list[str]:
    procedure = campaign.procedure
    if procedure.department_id != campaign.department_id:
        return [_("キャンペーンと同じ担当部署の手続きを選んでください。")]
    if procedure.current_version_id is None:
        return [_("この手続きはまだ公開されていません。公開してから選んでください。")]
    problems = []
    completed = ApplicationStatus.objects.filter(procedure=procedure, code=COMPLETED_STATUS_CODE).first()
    if completed is None:
        problems.append(_("この手続きには「完了」（コード completed）の状態がありません。"))
    elif not StatusTransition.objects.filter(
        procedure=procedure, from_status=procedure_initial_status(procedure=procedure), to_status=completed
    ).exists():
        problems.append(
            _("この手続きの「状態の変更ルール」に、最初の状態から「%(label)s」への変更がありません。")
            % {"label": completed.label}
        )
    try:
        spec = procedure_spec_get(procedure.current_version)
    except SpecError:
        return [*problems, _("この手続きの公開中のバージョンを読み込めません。")]
    return problems + fixed_answers_problems(spec, campaign.fixed_answers)


def campaign_problems(campaign: Campaign) -> dict[str, list[str]]:
    """{field: problems} that keep the campaign from being saved or sent; empty when it can be."""
    problems: dict[str, list[str]] = {}

    def add(field: str, messages: list[str]) -> None:
        if messages:
            problems.setdefault(field, []).extend(messages)

    add("question", _text_problems(campaign.question))
    add("reminder_text", _text_problems(campaign.reminder_text))
    if campaign.reminder_after_days is not None and not (campaign.reminder_text or "").strip():
        add("reminder_text", [_("再通知するときは、再通知の文面を入力してください。")])
    if (campaign.yes_label or "").strip() == (campaign.no_label or "").strip():
        add("no_label", [_("「はい」と「いいえ」のボタンには別の言葉を入れてください。")])
    if campaign.match_by == Campaign.MatchBy.ATTRIBUTE:
        attribute = campaign.match_attribute if campaign.match_attribute_id else None
        if attribute is None:
            add("match_attribute", [_("照合する属性を選んでください。")])
        elif attribute.kind not in (Attribute.Kind.TEXT, Attribute.Kind.NUMBER):
            add("match_attribute", [_("照合には「テキスト」か「数値」の属性を選んでください。")])
    elif campaign.match_attribute_id is not None:
        add("match_attribute", [_("LINE ユーザーIDで照合するときは、属性を空欄にしてください。")])
    if campaign.status == Campaign.Status.DRAFT and campaign.deadline and campaign.deadline <= timezone.now():
        add("deadline", [_("回答期限は、これからの日時にしてください。")])
    if campaign.procedure_id is not None:
        add("procedure", _procedure_problems(campaign))
    return problems


# --------------------------------------------------------------------------
# CSV import
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    rows: int
    matched: int


def _decode(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CampaignRefused([_("文字コードを読み取れません。UTF-8 か Shift_JIS（CP932）の CSV で保存してください。")])


def _key_column(campaign: Campaign, header: list[str]) -> int:
    wanted = [campaign.key_column.strip()]
    if campaign.match_by == Campaign.MatchBy.LINE_USER_ID:
        wanted += list(_LINE_USER_ID_HEADERS)
    names = [unicodedata.normalize("NFKC", name).strip() for name in header]
    for name in wanted:
        normalized = unicodedata.normalize("NFKC", name).strip()
        if normalized in names:
            return names.index(normalized)
    raise CampaignRefused(
        [
            _("1 行目（見出し）に照合列「%(column)s」がありません。見出し：%(found)s")
            % {"column": campaign.key_column, "found": "、".join(f"「{name}」" for name in header) or _("（空）")}
        ]
    )


def _normalized_key(campaign: Campaign, raw: str) -> tuple[str | None, str]:
    """(the stored form of a key, or None) and, when None, why the key cannot be used."""
    text = unicodedata.normalize("NFKC", raw or "").strip()
    if not text:
        return None, _("照合列が空です。")
    if len(text) > CAMPAIGN_MATCH_VALUE_MAX:
        return None, _("照合列の値が長すぎます（%(max)s 文字まで）。") % {"max": CAMPAIGN_MATCH_VALUE_MAX}
    if campaign.match_by == Campaign.MatchBy.LINE_USER_ID:
        if not LINE_USER_ID.match(text):
            return None, _("LINE ユーザーIDの形式ではありません（U と 32 文字の英数字）。")
        return text, ""
    if campaign.match_attribute.kind == Attribute.Kind.NUMBER:
        return _number_key(text.replace(",", ""))
    return text, ""


def _number_key(text: str) -> tuple[str | None, str]:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None, _("数値ではありません。")
    if not number.is_finite() or abs(number) >= Decimal("1e11"):
        return None, _("数値ではありません。")
    return format(number.normalize(), "f"), ""


def _records(reader):
    """(line number, cells) of each record; a record csv cannot read ends the file with a problem."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield reader.line_num, None
            return
        yield reader.line_num, record


def _rows(campaign: Campaign, text: str) -> list[tuple[int, str]]:
    """(line number, key) of every data row; CampaignRefused listing every bad row (by line number)."""
    records = _records(csv.reader(io.StringIO(text, newline=""), strict=True))
    line, header = next(records, (1, []))
    if not header:
        raise CampaignRefused([_("1 行目に見出しがありません。1 行目に見出し、2 行目から対象者を書いてください。")])
    column = _key_column(campaign, header)
    rows, problems, seen = [], [], {}
    for line, record in records:
        if record is None:
            problems.append(_('%(line)s 行目：CSV として読めません（引用符 " の閉じ忘れなど）。') % {"line": line})
            continue
        if not any(cell.strip() for cell in record):
            continue  # a blank line
        if len(rows) + len(problems) >= CSV_MAX_ROWS:
            raise CampaignRefused(
                [_("行が多すぎます。1 回に取り込めるのは %(max)s 行までです。") % {"max": CSV_MAX_ROWS}]
            )
        if len(record) != len(header):
            problems.append(
                _("%(line)s 行目：列の数が見出しと違います（見出し %(expected)s 列、この行 %(got)s 列）。")
                % {"line": line, "expected": len(header), "got": len(record)}
            )
            continue
        key, reason = _normalized_key(campaign, record[column])
        if key is None:
            problems.append(_("%(line)s 行目：%(reason)s") % {"line": line, "reason": reason})
        elif key in seen:
            problems.append(
                _("%(line)s 行目：照合列の値が %(first)s 行目と重複しています。") % {"line": line, "first": seen[key]}
            )
        else:
            seen[key] = line
            rows.append((line, key))
    if problems:
        listed = problems[:PROBLEMS_LISTED]
        if len(problems) > PROBLEMS_LISTED:
            listed.append(_("ほかに %(more)s 件の問題があります。") % {"more": len(problems) - PROBLEMS_LISTED})
        raise CampaignRefused(
            [_("%(count)s 行に問題があるため、何も取り込んでいません。") % {"count": len(problems)}, *listed]
        )
    if not rows:
        raise CampaignRefused([_("対象者の行がありません。2 行目から対象者を書いてください。")])
    return rows


@transaction.atomic
def recipients_import(*, campaign: Campaign, raw: bytes, actor, request=None) -> ImportResult:
    """Replace the draft campaign's recipients with the CSV's rows, all or nothing, and match them."""
    campaign = Campaign.objects.select_for_update(of=("self",)).select_related("match_attribute").get(pk=campaign.pk)
    if not policy.can(actor, policy.CHANGE, campaign):
        raise CampaignRefused([_("このキャンペーンの対象者を取り込む権限がありません。")])
    if campaign.status != Campaign.Status.DRAFT:
        raise CampaignRefused([_("送信を始めたキャンペーンの対象者は取り込み直せません。")])
    if len(raw) > CSV_MAX_BYTES:
        raise CampaignRefused(
            [
                _("ファイルが大きすぎます。上限は %(max)s バイトです。ファイルを分けてください。")
                % {"max": CSV_MAX_BYTES}
            ]
        )
    problems = campaign_problems(campaign)
    if problems.get("match_attribute"):
        raise CampaignRefused(problems["match_attribute"])
    rows = _rows(campaign, _decode(raw))
    CampaignRecipient.objects.filter(campaign=campaign).delete()
    CampaignRecipient.objects.bulk_create(
        CampaignRecipient(campaign=campaign, row_number=line, match_value=key) for line, key in rows
    )
    matched = recipients_match(campaign=campaign)
    audit_record(
        actor=actor, action=audit_actions.CAMPAIGN_IMPORT, obj=campaign, request=request, details={"rows": len(rows), "matched": matched}
    )
    return ImportResult(rows=len(rows), matched=matched)


def _residents_by_key(campaign: Campaign, keys: list[str]) -> dict[str, int]:
    """key -> the one resident it names (keys naming several residents are left out: never guessed)."""
    if campaign.match_by == Campaign.MatchBy.LINE_USER_ID:
        return dict(Resident.objects.filter(line_user_id__in=keys).values_list("line_user_id", "pk"))
    values = ResidentAttributeValue.objects.filter(attribute_id=campaign.match_attribute_id)
    if campaign.match_attribute.kind == Attribute.Kind.NUMBER:
        pairs = [
            (format(number.normalize(), "f"), resident_id)
            for number, resident_id in values.filter(value_number__in=[Decimal(key) for key in keys]).values_list(
                "value_number", "resident_id"
            )
        ]
    else:
        pairs = list(values.filter(value_text__in=keys).values_list("value_text", "resident_id"))
    found: dict[str, set[int]] = {}
    for key, resident_id in pairs:
        found.setdefault(key, set()).add(resident_id)
    return {key: ids.pop() for key, ids in found.items() if len(ids) == 1}


def recipients_match(*, campaign: Campaign) -> int:
    """Match the campaign's unmatched recipients to residents (a resident may register after the
    import); the number of matched recipients."""
    unmatched = list(CampaignRecipient.objects.filter(campaign=campaign, resident__isnull=True).only("pk", "match_value"))
    for start in range(0, len(unmatched), 1000):
        chunk = unmatched[start : start + 1000]
        residents = _residents_by_key(campaign, [recipient.match_value for recipient in chunk])
        found = [recipient for recipient in chunk if recipient.match_value in residents]
        for recipient in found:
            recipient.resident_id = residents[recipient.match_value]
        CampaignRecipient.objects.bulk_update(found, ["resident"])  # one statement per chunk, not per row
    return CampaignRecipient.objects.filter(campaign=campaign, resident__isnull=False).count()


# --------------------------------------------------------------------------
# Sending and reminders
# --------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _question(campaign: Campaign, recipient: CampaignRecipient, token: str) -> Message:
    value = f"{VALUE_PREFIX}:{recipient.pk}:{token}"
    return Message(
        "step.message",
        {"label": campaign.question},
        layout="confirm",
        actions=(
            Action("campaign.yes", {"label": campaign.yes_label}, Event(type="command", name=COMMAND_YES, value=value)),
            Action("campaign.no", {"label": campaign.no_label}, Event(type="command", name=COMMAND_NO, value=value)),
        ),
    )


def _push(campaign: Campaign, recipient: CampaignRecipient, *, reminder: bool) -> bool:
    """Queue the question (after the reminder text) with a fresh token; whether LINE can reach the resident.

    The outbox rows are written in the caller's transaction, together with the token and the
    recipient's pushed_at / reminded_at: a worker that dies before the commit pushed nothing.
    """
    from procedures.notices import notice_send  # imported here: the channels register their deliverers late

    token = secrets.token_urlsafe(18)
    messages = (Message("step.message", {"label": campaign.reminder_text}),) if reminder else ()
    messages += (_question(campaign, recipient, token),)
    if not notice_send(line_user_id=recipient.resident.line_user_id, messages=messages):
        return False
    recipient.token_hash = _token_hash(token)
    return True


@dataclass
class PushRun:
    pushed: int = 0
    unreachable: int = 0  # blocked the account, or not a LINE user


@transaction.atomic
def campaign_send_start(*, campaign: Campaign, actor, now=None, request=None) -> int:
    """Start (or resume) sending: matches recipients again and queues the push task.

    Returns how many matched recipients have not been pushed yet. Sending again never pushes
    anyone twice (see campaign_push).
    """
    now = now or timezone.now()
    campaign = (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("procedure", "match_attribute")
        .get(pk=campaign.pk)
    )
    if not policy.can(actor, policy.CHANGE, campaign):
        raise CampaignRefused([_("このキャンペーンを送信する権限がありません。")])
    if campaign.status == Campaign.Status.CLOSED or campaign.deadline <= now:
        raise CampaignRefused([_("回答期限を過ぎたキャンペーンは送信できません。")])
    problems = campaign_problems(campaign)
    if problems:
        raise CampaignRefused([message for messages in problems.values() for message in messages])
    recipients_match(campaign=campaign)
    waiting = CampaignRecipient.objects.filter(
        campaign=campaign, resident__isnull=False, pushed_at__isnull=True
    ).count()
    if not CampaignRecipient.objects.filter(campaign=campaign, resident__isnull=False).exists():
        raise CampaignRefused([_("住民と照合できた対象者がいません。CSV を取り込んでください。")])
    campaign.status = Campaign.Status.SENDING
    campaign.sent_at = campaign.sent_at or now
    campaign.save(update_fields=["status", "sent_at", "updated_at"])
    audit_record(actor=actor, action=audit_actions.CAMPAIGN_SEND, obj=campaign, request=request, details={"waiting": waiting})
    pk = campaign.pk
    transaction.on_commit(lambda: async_task("broadcasts.campaign_tasks.push_campaign", pk), robust=True)
    return waiting


def campaign_push(*, campaign_id: int, now=None, batch_size: int = PUSH_BATCH) -> PushRun:
    """Push the question to every matched recipient not pushed yet, in batches (one transaction each)."""
    run = PushRun()
    last_id = 0
    while True:
        with transaction.atomic():
            moment = now or timezone.now()
            campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
            if campaign.status != Campaign.Status.SENDING or campaign.deadline <= moment:
                return run
            batch = list(
                CampaignRecipient.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(campaign=campaign, resident__isnull=False, pushed_at__isnull=True, pk__gt=last_id)
                .select_related("resident")
                .order_by("pk")[:batch_size]
            )
            if not batch:
                campaign.status = Campaign.Status.OPEN
                campaign.save(update_fields=["status", "updated_at"])
                return run
            for recipient in batch:
                if _push(campaign, recipient, reminder=False):
                    recipient.pushed_at = moment
                    recipient.save(update_fields=["token_hash", "pushed_at"])
                    run.pushed += 1
                else:
                    run.unreachable += 1
            last_id = batch[-1].pk


def campaign_reminders_send(*, now=None, batch_size: int = PUSH_BATCH) -> PushRun:
    """Once, remind the recipients who have not answered `reminder_after_days` after the push;
    close the campaigns whose deadline has passed."""
    now = now or timezone.now()
    # A campaign still sending when its deadline passed is over too: nobody can answer any more.
    Campaign.objects.filter(status__in=(Campaign.Status.OPEN, Campaign.Status.SENDING), deadline__lte=now).update(
        status=Campaign.Status.CLOSED, updated_at=now
    )
    run = PushRun()
    campaigns = Campaign.objects.filter(
        status=Campaign.Status.OPEN, deadline__gt=now, reminder_after_days__isnull=False
    ).values_list("pk", flat=True)
    for campaign_id in campaigns:
        last_id = 0
        while True:
            with transaction.atomic():
                campaign = Campaign.objects.get(pk=campaign_id)
                batch = list(
                    CampaignRecipient.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(
                        campaign=campaign,
                        resident__isnull=False,
                        answer=CampaignRecipient.Answer.NONE,
                        pushed_at__lte=now - timedelta(days=campaign.reminder_after_days),
                        reminded_at__isnull=True,
                        pk__gt=last_id,
                    )
                    .select_related("resident")
                    .order_by("pk")[:batch_size]
                )
                if not batch:
                    break
                for recipient in batch:
                    # Reminded (once) even when LINE cannot reach the resident now: no retry every hour.
                    if _push(campaign, recipient, reminder=True):
                        run.pushed += 1
                    else:
                        run.unreachable += 1
                    recipient.reminded_at = now
                    recipient.save(update_fields=["token_hash", "reminded_at"])
                last_id = batch[-1].pk
    return run


# --------------------------------------------------------------------------
# The resident's answer
# --------------------------------------------------------------------------


def _say(text: str) -> tuple[Message, ...]:
    return (Message("step.message", {"label": text}),)


def _answered_reply(recipient: CampaignRecipient) -> tuple[Message, ...]:
    if recipient.answer == CampaignRecipient.Answer.YES and recipient.application_id is not None:
        application = recipient.application
        return _say(
            _("すでに「はい」とご回答いただいています。\n受付番号：%(receipt)s\n現在の状態：%(status)s")
            % {"receipt": application.receipt_number, "status": application.status.label}
        )
    return _say(
        _("すでにご回答いただいています（%(answer)s）。回答を変更したいときは、担当課へお問い合わせください。")
        % {"answer": recipient.get_answer_display()}
    )


def _application_complete(campaign: Campaign, recipient: CampaignRecipient, line_user_id: str, now) -> Application:
    procedure = campaign.procedure
    version = procedure.current_version
    spec = procedure_spec_get(version)
    answers, _removed = prune(spec, dict(campaign.fixed_answers))
    submit = Submit(
        procedure_id=procedure.pk,
        version_id=version.pk,
        submission_key=f"campaign-{recipient.pk}",
        answers=answers,
        computed=compute(spec, answers),
    )
    application = application_submit(
        submit=submit,
        line_user_id=line_user_id,
        resident=recipient.resident,
        channel=Application.Channel.CAMPAIGN,
        now=now,
    )
    completed = ApplicationStatus.objects.get(procedure=procedure, code=COMPLETED_STATUS_CODE)
    application_status_change(
        application=application,
        to_status=completed,
        actor=None,
        note=_("申請確認キャンペーン「%(name)s」で「はい」と回答") % {"name": campaign.name},
        notify=False,  # the reply to the tap gives the receipt number and the status already
    )
    application.refresh_from_db(fields=["status"])
    return application


@transaction.atomic
def campaign_answer(*, recipient_id: int, token: str, answer: str, line_user_id: str, now) -> tuple[Message, ...]:
    """The resident's tap on "yes" or "no"; the reply. Anything but a first, timely tap of the
    resident's own buttons changes nothing."""
    recipient = (
        CampaignRecipient.objects.select_for_update(of=("self",))
        .select_related("campaign__procedure__current_version", "resident", "application__status")
        .filter(pk=recipient_id)
        .first()
    )
    if (
        recipient is None
        or not recipient.token_hash
        or not constant_time_compare(recipient.token_hash, _token_hash(token or ""))
        or answer not in (CampaignRecipient.Answer.YES, CampaignRecipient.Answer.NO)
    ):
        return _say(_("このボタンは使えません。市からの最新のメッセージのボタンからお答えください。"))
    if recipient.resident is None or recipient.resident.line_user_id != line_user_id:
        return _say(_("このご案内は、別の方にお送りしたものです。ご自身に届いたメッセージのボタンからお答えください。"))
    if recipient.answer != CampaignRecipient.Answer.NONE:
        return _answered_reply(recipient)
    campaign = recipient.campaign
    if campaign.status not in (Campaign.Status.SENDING, Campaign.Status.OPEN) or now >= campaign.deadline:
        deadline = timezone.localtime(campaign.deadline)
        return _say(
            _("回答の受付は %(deadline)s で終了しました。お手続きについては担当課へお問い合わせください。")
            % {"deadline": f"{deadline:%Y年%m月%d日 %H:%M}"}
        )
    if answer == CampaignRecipient.Answer.NO:
        recipient.answer, recipient.answered_at = answer, now
        recipient.save(update_fields=["answer", "answered_at"])
        return _say(_("ご回答ありがとうございます。「%(no)s」として承りました。") % {"no": campaign.no_label})
    try:
        with transaction.atomic():
            application = _application_complete(campaign, recipient, line_user_id, now)
    except (WorkflowError, ApplicationStatus.DoesNotExist, SpecError, ProblemsError):
        # The procedure changed since the campaign was checked: nothing is recorded, staff fix it.
        return _say(
            _(
                "申し訳ありません。ただいまこの申請を受け付けられません。時間をおいてお試しいただくか、担当課へお問い合わせください。"
            )
        )
    recipient.answer, recipient.answered_at, recipient.application = answer, now, application
    recipient.save(update_fields=["answer", "answered_at", "application"])
    return _say(
        _(
            "ご回答ありがとうございます。「%(procedure)s」の申請を受け付けました。\n受付番号：%(receipt)s\n現在の状態：%(status)s"
        )
        % {
            "procedure": campaign.procedure.name,
            "receipt": application.receipt_number,
            "status": application.status.label,
        }
    )


def campaign_postback_reply(*, event, line_user_id: str, now=None) -> tuple[Message, ...] | None:
    """The reply to a tap on a campaign button (a signed postback); None when `event` is not one."""
    if not isinstance(event, Event) or event.type != "command" or event.name not in ANSWER_COMMANDS:
        return None
    prefix, _colon, rest = str(event.value or "").partition(":")
    recipient_id, _colon, token = rest.partition(":")
    if prefix != VALUE_PREFIX or not (recipient_id.isascii() and recipient_id.isdigit()):
        recipient_id = "0"
    return campaign_answer(
        recipient_id=int(recipient_id),
        token=token,
        answer=ANSWER_COMMANDS[event.name],
        line_user_id=line_user_id,
        now=now or timezone.now(),
    )


# --------------------------------------------------------------------------
# Results export
# --------------------------------------------------------------------------


@transaction.atomic
def campaign_results_export(*, campaign: Campaign, actor, request=None) -> bytes:
    """The campaign's results as CSV (UTF-8 with a BOM), audit-logged; only for who may export them."""
    if not policy.can(actor, policy.EXPORT, campaign):
        raise CampaignRefused([_("このキャンペーンの結果を書き出す権限がありません。")])
    rows = campaign_result_rows(campaign=campaign)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(header) for header in RESULT_HEADERS])
    writer.writerows([neutralise(cell) for cell in row] for row in rows)
    audit_record(actor=actor, action=audit_actions.CAMPAIGN_EXPORT, obj=campaign, request=request, details={"rows": len(rows)})
    return (BOM + buffer.getvalue()).encode("utf-8")
