"""Writes about residents that go through the LINE channel: the LINE profile, personal messages.

Kept apart from residents/services.py, which procedures may import: procedures must not depend
on messaging, not even indirectly (.importlinter, "procedures-without-channels").

LINE profile (display name, picture URL; never required, a resident without one is shown by id):
    after a follow: messaging.services._follow_record queues residents.tasks.refresh_resident_profile
        once the follow is committed;
    periodically: residents.tasks.refresh_stale_profiles (schedule migration
        0003_profile_refresh_schedule) fetches those never fetched or older than PROFILE_STALE_AFTER,
        in batches. A fetch that failed (no answer, 429, 5xx) changes nothing, so the next run tries
        again; a run stops at the first such failure or at LINE's rate limit (messaging/ratelimit.py).
    Simulated residents and ids that are not LINE user ids are skipped. 404 (not a friend, or
    unknown) keeps what was known and records the date, so the resident waits for the next round.

Personal message (個別メッセージ) from the admin: resident_message_send, a text pushed through the
outbox, written to the audit log (never its text).

The name and the picture are personal data: logs carry resident ids and LINE's statuses only.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions as audit_actions
from audit.services import audit_record
from messaging import ratelimit
from messaging.line import render
from messaging.line.client import LineClient
from messaging.services import outbox_push_create
from procedures.correspondence import personal_data_problems
from residents import line_selectors
from residents.models import Resident
from staff import policy

logger = logging.getLogger(__name__)

PROFILE_STALE_AFTER = timedelta(days=7)
PROFILE_REFRESH_BATCH = 200
PROFILE_REFRESH_BUDGET_SECONDS = 60  # well inside the task time-out (Q_TIMEOUT)
DISPLAY_NAME_MAX = Resident._meta.get_field("display_name").max_length
PICTURE_URL_MAX = Resident._meta.get_field("picture_url").max_length
RESIDENT_MESSAGE_MAX = 1000  # like a message about an application: a notice, not a letter

REFRESHED = "refreshed"
NOT_FOUND = "not_found"
SKIPPED = "skipped"
DEFERRED = "deferred"
FAILED = "failed"


# --------------------------------------------------------------------------
# LINE profile
# --------------------------------------------------------------------------


def resident_profile_refresh(*, resident_id: int, now: datetime | None = None) -> str:
    """Fetch one resident's LINE profile and store it; the outcome (REFRESHED, NOT_FOUND, ...)."""
    with LineClient() as line:
        return _profile_refresh(line, resident_id, now or timezone.now())


def resident_profiles_refresh_stale(
    *,
    now: datetime | None = None,
    batch_size: int = PROFILE_REFRESH_BATCH,
    budget_seconds: float = PROFILE_REFRESH_BUDGET_SECONDS,
) -> dict[str, int]:
    """Refresh the profiles never fetched or older than PROFILE_STALE_AFTER, oldest first: outcomes counted."""
    now = now or timezone.now()
    stale = line_selectors.residents_with_stale_profile(refreshed_before=now - PROFILE_STALE_AFTER)
    ids = list(stale.values_list("pk", flat=True)[:batch_size])
    outcomes: Counter[str] = Counter()
    if not ids:
        return {}
    deadline = time.monotonic() + budget_seconds
    with LineClient() as line:
        for resident_id in ids:
            if time.monotonic() > deadline:
                break
            outcome = _profile_refresh(line, resident_id, now)
            outcomes[outcome] += 1
            if outcome in (DEFERRED, FAILED):
                break  # LINE is failing or the limit is used up: asking more now would fail too
    logger.info("resident profiles: %s", ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items())))
    return dict(outcomes)


def _picture_url(url: str) -> str:
    # Shown as an <img> in the admin: only LINE's https URLs, and only whole ones.
    return url if url.startswith("https://") and len(url) <= PICTURE_URL_MAX else ""


def _profile_refresh(line: LineClient, resident_id: int, now: datetime) -> str:
    # No transaction around the call: LINE's answer is written with one UPDATE afterwards, and a
    # refresh is idempotent (two runs fetching the same profile store the same thing).
    resident = Resident.objects.filter(pk=resident_id).values("line_user_id", "is_simulated").first()
    if resident is None or resident["is_simulated"] or not line_selectors.LINE_USER_ID.match(resident["line_user_id"]):
        return SKIPPED
    if ratelimit.acquire(ratelimit.PROFILE):
        logger.info("resident %s: LINE profile deferred by the rate limit", resident_id)
        return DEFERRED
    profile = line.profile(resident["line_user_id"])
    if profile.result.ok:
        fields = {
            "display_name": profile.display_name[:DISPLAY_NAME_MAX],
            "picture_url": _picture_url(profile.picture_url),
            "profile_refreshed_at": now,
        }
        outcome = REFRESHED
    elif profile.not_found:
        fields, outcome = {"profile_refreshed_at": now}, NOT_FOUND
    else:
        logger.warning(
            "resident %s: LINE profile not fetched (status %s), tried again later",
            resident_id,
            profile.result.status or "no answer",
        )
        return FAILED
    Resident.objects.filter(pk=resident_id).update(**fields)
    logger.info("resident %s: LINE profile %s", resident_id, outcome)
    return outcome


# --------------------------------------------------------------------------
# Personal message from the admin
# --------------------------------------------------------------------------


class ResidentMessageRefused(Exception):
    """A personal message that cannot be sent; the message says why, in Japanese."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _message_text(text: str) -> str:
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


@transaction.atomic
def resident_message_send(*, resident: Resident, text: str, sender, request=None) -> list[int]:
    """Push a staff member's text to one resident through the outbox; the outbox row ids.

    Raises ResidentMessageRefused (nothing written) when the sender may not write to this resident,
    the text is empty or too long, or LINE cannot deliver it (not a LINE user, blocked).
    """
    if not line_selectors.resident_message_allowed(user=sender, resident=resident):
        raise ResidentMessageRefused(_("この住民に個別メッセージを送る権限がありません。"))
    text = _message_text(text)
    if not text:
        raise ResidentMessageRefused(_("メッセージを入力してください。"))
    if len(text) > RESIDENT_MESSAGE_MAX:
        raise ResidentMessageRefused(
            _("メッセージは%(max)s文字以内にしてください（現在%(length)s文字）。")
            % {"max": RESIDENT_MESSAGE_MAX, "length": len(text)}
        )
    visible = (
        policy.applications_visible_to(sender, action=policy.VIEW).filter(resident=resident).select_related("version")
    )
    problems = personal_data_problems(applications=visible, text=text, what=_("メッセージ"))
    if problems:
        raise ResidentMessageRefused(" ".join(problems))
    if not line_selectors.LINE_USER_ID.match(resident.line_user_id):
        raise ResidentMessageRefused(_("この住民は LINE の利用者ではないため、メッセージを送れません。"))
    if line_selectors.resident_is_blocking(resident):
        raise ResidentMessageRefused(
            _("この住民は LINE 公式アカウントをブロックしているため、メッセージを送れません。")
        )
    outbox_ids = outbox_push_create(line_user_id=resident.line_user_id, messages=render.plain_text(text))
    audit_record(
        actor=sender,
        action=audit_actions.RESIDENT_MESSAGE,
        obj=resident,
        department=line_selectors.resident_message_department_id(user=sender, resident=resident),
        details={"outbox": outbox_ids, "length": len(text)},
        request=request,
    )
    return outbox_ids
