"""Which rich menu each resident sees, and telling LINE only what changed.

A resident who follows the account sees, in order of precedence:

1. in disaster mode, the disaster menu (everyone: linked one by one, and it is the default too);
2. else the deployed per-segment menu with the lowest priority number whose segment holds them;
3. else the default menu (no per-user link).

`RichMenuLink` records what LINE was last told per user. The plan compares it with what each user
should see and sends only the differences, as bulk link/unlink calls of at most 500 users. A row is
written only for a chunk LINE accepted, so a failed or interrupted run is simply run again: what
went through is not sent twice, what did not is sent next time.

Residents who switched tabs themselves (a richmenuswitch action links the tab menu to them on
LINE's side) are not recorded; a change of their segment menu or disaster mode resets them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from broadcasts.richmenu.models import DisasterModeSwitch, RichMenu, RichMenuLink
from messaging import ratelimit
from messaging.line.client import LineClient, SendResult
from messaging.models import LineUser
from residents.segments import InvalidSegmentRules, segment_residents

logger = logging.getLogger(__name__)

LINK_CHUNK_SIZE = 500  # LINE: bulk link / unlink take at most 500 user ids
LINK_RESIDENT_TASK = "broadcasts.richmenu.tasks.rich_menu_link_resident_task"
RECONCILE_TASK = "broadcasts.richmenu.tasks.rich_menu_links_reconcile_task"


# -- reads -----------------------------------------------------------------


def disaster_mode_switch_latest() -> DisasterModeSwitch | None:
    return DisasterModeSwitch.objects.select_related("menu").order_by("-started_at", "-id").first()


def disaster_mode_menu() -> RichMenu | None:
    """The disaster menu everyone must see, or None in normal times.

    Disaster mode is what staff asked for last: the latest switch, whatever its progress. A switch
    that failed half-way still means "on" (or "off"), so the reconciler finishes its job.
    """
    switch = disaster_mode_switch_latest()
    if switch is None or switch.direction != DisasterModeSwitch.Direction.ON:
        return None
    return switch.menu


def default_menu_live() -> RichMenu | None:
    return RichMenu.objects.filter(role=RichMenu.Role.DEFAULT).exclude(line_rich_menu_id="").first()


def segment_menus_live() -> list[RichMenu]:
    """Deployed per-segment menus, the one that wins (lowest priority number) first."""
    return list(
        RichMenu.objects.filter(role=RichMenu.Role.SEGMENT, segment__isnull=False)
        .exclude(line_rich_menu_id="")
        .select_related("segment")
        .order_by("priority", "id")
    )


def line_users_following() -> QuerySet[LineUser]:
    return LineUser.objects.filter(is_following=True)


# -- the plan --------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    line_user_pk: int
    line_user_id: str
    menu: RichMenu | None  # None: unlink (back to the default menu)


def menus_wanted(users: QuerySet[LineUser]) -> dict[int, RichMenu | None]:
    """LineUser pk -> the menu to link to them (None: the default menu, no per-user link)."""
    pairs = list(users.values_list("pk", "resident_id"))
    disaster = disaster_mode_menu()
    if disaster is not None and disaster.line_rich_menu_id:
        return {pk: disaster for pk, _resident in pairs}
    wanted: dict[int, RichMenu | None] = {pk: None for pk, _resident in pairs}
    users_of: dict[int, list[int]] = {}
    for pk, resident_id in pairs:
        if resident_id is not None:
            users_of.setdefault(resident_id, []).append(pk)
    if not users_of:
        return wanted
    unassigned = set(users_of)
    for menu in segment_menus_live():
        try:
            members = segment_residents(menu.segment).filter(pk__in=users.values("resident_id"))
        except InvalidSegmentRules:
            logger.warning("rich menu %s: segment %s has invalid rules, skipped", menu.pk, menu.segment_id)
            continue
        for resident_id in members.values_list("pk", flat=True):
            if resident_id in unassigned:
                unassigned.discard(resident_id)
                for pk in users_of[resident_id]:
                    wanted[pk] = menu
    return wanted


def links_plan(users: QuerySet[LineUser]) -> list[Change]:
    """The differences between what LINE was told (RichMenuLink) and what each user should see."""
    wanted = menus_wanted(users)
    recorded = {
        link.line_user_id: (link.menu_id, link.line_rich_menu_id)
        for link in RichMenuLink.objects.filter(line_user__in=users)
    }
    user_ids = dict(users.values_list("pk", "line_user_id"))
    changes = []
    for pk in sorted(wanted):
        menu, now_linked = wanted[pk], recorded.get(pk)
        if menu is None:
            if now_linked is not None:
                changes.append(Change(pk, user_ids[pk], None))
        elif now_linked != (menu.pk, menu.line_rich_menu_id):
            changes.append(Change(pk, user_ids[pk], menu))
    return changes


# -- applying it -----------------------------------------------------------


@dataclass
class LinkOutcome:
    linked: int = 0
    unlinked: int = 0
    failed: int = 0
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    out_of_time: bool = False  # stopped at the deadline or the rate limit: the rest is for a follow-up task

    @property
    def ok(self) -> bool:
        return not self.failed


def _chunks(items: list, size: int = LINK_CHUNK_SIZE) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def line_error(result: SendResult) -> str:
    """LINE's answer in words for staff (status and LINE's own message)."""
    if result.status is None:
        return _("LINE に接続できませんでした（%(error)s）") % {"error": result.error}
    return _("LINE の応答 %(status)s: %(error)s") % {"status": result.status, "error": result.error or "-"}


def links_record(changes: list[Change], *, now: datetime) -> None:
    """Write what LINE accepted for these users (one chunk)."""
    unlinked = [change.line_user_pk for change in changes if change.menu is None]
    if unlinked:
        RichMenuLink.objects.filter(line_user_id__in=unlinked).delete()
    linked = [
        RichMenuLink(
            line_user_id=change.line_user_pk,
            menu=change.menu,
            line_rich_menu_id=change.menu.line_rich_menu_id,
            linked_at=now,
        )
        for change in changes
        if change.menu is not None
    ]
    if linked:
        RichMenuLink.objects.bulk_create(
            linked,
            update_conflicts=True,
            unique_fields=["line_user"],
            update_fields=["menu", "line_rich_menu_id", "linked_at"],
        )


def links_apply(
    line: LineClient,
    changes: list[Change],
    *,
    now: datetime,
    on_chunk: Callable[[list[Change], SendResult], None] | None = None,
    deadline: float | None = None,
) -> LinkOutcome:
    """Send the changes, 500 users a call, recording each chunk LINE accepted.

    A chunk LINE refuses is left for the next run. On 429 (rate limit) or no answer, the run stops:
    the following calls would meet the same fate. `deadline` (time.monotonic()) keeps a task within
    the worker's time-out: past it, or when LINE's rate limit for bulk linking is used up for this
    second (messaging/ratelimit.py), the run stops with `out_of_time`.
    """
    outcome = LinkOutcome()
    groups: dict[str, list[Change]] = {}
    for change in changes:
        groups.setdefault(change.menu.line_rich_menu_id if change.menu else "", []).append(change)
    calls = [(line_rich_menu_id, chunk) for line_rich_menu_id, group in groups.items() for chunk in _chunks(group)]
    for line_rich_menu_id, chunk in calls:
        # Past the deadline, or over LINE's rate limit for this call: the rest is for a follow-up task.
        if (deadline is not None and time.monotonic() > deadline) or ratelimit.acquire(ratelimit.RICH_MENU_BULK):
            outcome.out_of_time = True
            break
        user_ids = [change.line_user_id for change in chunk]
        if line_rich_menu_id:
            result = line.rich_menu_link_users(line_rich_menu_id, user_ids)
        else:
            result = line.rich_menu_unlink_users(user_ids)
        outcome.calls += 1
        if result.ok:
            with transaction.atomic():
                links_record(chunk, now=now)
            if line_rich_menu_id:
                outcome.linked += len(chunk)
            else:
                outcome.unlinked += len(chunk)
        else:
            outcome.errors.append(line_error(result))
        if on_chunk is not None:
            on_chunk(chunk, result)
        if not result.ok and (result.status is None or result.status == 429):
            break
    outcome.failed = len(changes) - outcome.linked - outcome.unlinked
    return outcome


# -- services --------------------------------------------------------------


def task_deadline() -> float:
    """When a task doing many LINE calls should stop and hand over to a new task (half the time-out)."""
    return time.monotonic() + settings.Q_CLUSTER["timeout"] / 2


def rich_menu_links_reconcile(*, now: datetime) -> LinkOutcome:
    """Nightly, and after a segment menu is deployed: every follower gets their menu.

    A run that reaches its deadline enqueues another one, which plans again and goes on from there.
    """
    changes = links_plan(line_users_following())
    if not changes:
        return LinkOutcome()
    with LineClient() as line:
        outcome = links_apply(line, changes, now=now, deadline=task_deadline())
    if outcome.out_of_time:
        rich_menu_links_reconcile_enqueue()
    if outcome.errors:
        # LINE's own error text is left out: it may echo the user ids of the call.
        logger.warning(
            "rich menu links: %d changed, %d failed in %d refused calls",
            outcome.linked + outcome.unlinked,
            outcome.failed,
            len(outcome.errors),
        )
    return outcome


def rich_menu_link_resident(*, line_user_id: str, now: datetime) -> LinkOutcome:
    """One resident followed again or their attributes changed: give them the menu they should see."""
    changes = links_plan(line_users_following().filter(line_user_id=line_user_id))
    if not changes:
        return LinkOutcome()
    with LineClient() as line:
        return links_apply(line, changes, now=now)


def rich_menu_link_resident_enqueue(line_user_id: str) -> None:
    """After the current transaction commits, relink one resident in a worker (never inline)."""
    transaction.on_commit(lambda: async_task(LINK_RESIDENT_TASK, line_user_id), robust=True)


def rich_menu_links_reconcile_enqueue() -> None:
    transaction.on_commit(lambda: async_task(RECONCILE_TASK), robust=True)
