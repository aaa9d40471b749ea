"""Putting a rich menu on LINE without ever leaving a resident without one.

LINE cannot change a rich menu: a new version is a new LINE rich menu. So a deployment

1. checks the menu here (sizes, tiles, chat bar text, image), then with LINE (validate endpoint);
2. creates the new LINE menu and uploads its image (data host);
3. points the menu's alias at it (tabs of other menus switch by alias, so they follow);
4. moves the residents linked to the old LINE menu to the new one (500 a call, from RichMenuLink);
5. makes it the default menu when it is the default (or the disaster menu in disaster mode);
6. only then deletes the old LINE menu.

If any step fails, what was done is undone in reverse order (residents moved back, alias pointed
back, the half-made new menu deleted) and the old menu, never touched, stays in place. Each attempt
is a RichMenuDeployment with LINE's answer and the step, in words for staff, and an audit entry.

A menu whose tiles switch to other menus (tabs) is deployed with them: the targets that were
never deployed or changed since go first, so their aliases exist when residents tap.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions as audit_actions
from audit.services import audit_record
from broadcasts.richmenu import linking, services
from broadcasts.richmenu.image import ImageRejected, image_check
from broadcasts.richmenu.line_json import RichMenuJsonError, menu_areas, rich_menu_object
from broadcasts.richmenu.models import RichMenu, RichMenuDeployment, RichMenuLink
from messaging import ratelimit
from messaging.line.client import LineClient, SendResult

logger = logging.getLogger(__name__)

RUNNING_STALE_AFTER = timedelta(minutes=15)  # a deployment still "running" after this was cut short


class RichMenuDeployBusy(ValueError):
    """Another deployment of the same menu is running."""


class _StepFailed(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass
class _Done:
    """What this deployment changed on LINE so far, to undo it on failure."""

    new_id: str = ""
    alias_id: str = ""  # set once the alias points at the new menu
    alias_before: str = ""  # the LINE menu the alias pointed at before ("": it did not exist)
    moved: list[RichMenuLink] = field(default_factory=list)


def _check(step: str, result: SendResult) -> None:
    if not result.ok:
        raise _StepFailed(step, linking.line_error(result))


def tab_set(menu: RichMenu) -> list[RichMenu]:
    """The menu and the menus its tiles switch to (and theirs) that need deploying, targets first.

    Tabs usually switch back and forth; a cycle is cut where it closes, which is fine because LINE
    only needs an alias to exist when a resident taps, not when a menu naming it is created.
    """
    order: list[RichMenu] = []
    seen: set[int] = set()

    def visit(current: RichMenu) -> None:
        seen.add(current.pk)
        for area in current.areas.filter(switch_to__isnull=False).select_related("switch_to"):
            if area.switch_to_id not in seen:
                visit(area.switch_to)
        order.append(current)

    visit(menu)
    return [each for each in order if each.pk == menu.pk or not each.line_rich_menu_id or each.changed_since_deploy]


def rich_menu_deploy(*, menu_id: int, actor, now: datetime) -> RichMenuDeployment:
    """Deploy the menu (with the tabs it switches to that need it). Returns the menu's deployment;
    RichMenuDeployBusy when the menu is being deployed already."""
    menu = RichMenu.objects.get(pk=menu_id)
    *targets, _menu = tab_set(menu)
    for target in targets:
        deployment = _deploy_one(target, actor=actor, now=now)
        if deployment.status != RichMenuDeployment.Status.SUCCEEDED:
            failed = _deployment_start(menu, actor=actor, now=now)
            message = _("切り替え先のメニュー「%(name)s」を反映できませんでした: %(error)s") % {
                "name": target.name,
                "error": deployment.error,
            }
            return _deployment_finish(failed, menu, done=_Done(), old_id=menu.line_rich_menu_id, error=message)
    return _deploy_one(menu, actor=actor, now=now)


def rich_menus_deploy_all(*, actor=None, now: datetime) -> list[RichMenuDeployment]:
    """Deploy every complete menu again (the demo's fake LINE forgets its menus when it restarts)."""
    deployments = []
    for menu in RichMenu.objects.order_by("id"):
        menu.refresh_from_db(fields=["deployed_at"])
        if menu.deployed_at == now:
            continue  # deployed a moment ago by this loop, as the target of a tab it deployed
        if not services.rich_menu_problems(menu):
            try:
                deployments.append(rich_menu_deploy(menu_id=menu.pk, actor=actor, now=now))
            except RichMenuDeployBusy:
                continue
    return deployments


@transaction.atomic
def _deployment_start(menu: RichMenu, *, actor, now: datetime) -> RichMenuDeployment:
    RichMenu.objects.select_for_update().filter(pk=menu.pk).first()  # one deployment of a menu at a time
    running = menu.deployments.filter(
        status=RichMenuDeployment.Status.RUNNING, started_at__gt=now - RUNNING_STALE_AFTER
    ).exists()
    if running:
        raise RichMenuDeployBusy(
            _("「%(name)s」は反映中です。終わってからもう一度お試しください。") % {"name": menu.name}
        )
    return RichMenuDeployment.objects.create(
        menu=menu,
        actor=actor if getattr(actor, "pk", None) else None,
        started_at=now,
        replaced_line_rich_menu_id=menu.line_rich_menu_id,
    )


def _deploy_one(menu: RichMenu, *, actor, now: datetime) -> RichMenuDeployment:
    deployment = _deployment_start(menu, actor=actor, now=now)
    menu.refresh_from_db()
    edited_at, old_id = menu.updated_at, menu.line_rich_menu_id
    done = _Done()
    error = ""
    with LineClient() as line:
        try:
            menu_json, data, content_type = _local_checked(menu)
            _check(_("LINE での確認"), line.rich_menu_validate(menu_json))
            _hourly_turn(_("LINE でのメニュー作成"), ratelimit.RICH_MENU_CREATE)
            created = line.rich_menu_create(menu_json)
            _check(_("LINE でのメニュー作成"), created.result)
            done.new_id = created.rich_menu_id
            RichMenuDeployment.objects.filter(pk=deployment.pk).update(line_rich_menu_id=done.new_id)
            _check(_("画像のアップロード"), line.rich_menu_image_set(done.new_id, data, content_type))
            if menu.alias_id:
                _alias_point(line, menu.alias_id, done)
            if old_id:
                _residents_move(line, old_id, done, now=now)
            if _shown_by_default(menu):
                _check(_("標準メニューの設定"), line.rich_menu_default_set(done.new_id))
        except _StepFailed as failure:
            error = _("%(step)sで失敗しました（%(message)s）。") % {"step": failure.step, "message": failure.message}
            error += _undo(line, done, old_id=old_id, now=now)
        else:
            if old_id:
                deleted = _menu_delete(line, old_id)
                if not deleted.ok and deleted.status != 404:
                    # The new menu is live; the old one is only left over on LINE.
                    logger.warning("rich menu %s: old LINE menu not deleted (%s)", menu.pk, deleted.status)
    return _deployment_finish(deployment, menu, done=done, old_id=old_id, error=error, edited_at=edited_at)


def _local_checked(menu: RichMenu) -> tuple[dict, bytes, str]:
    step = _("内容の確認")
    problems = services.rich_menu_problems(menu)
    if problems:
        raise _StepFailed(step, " ".join(problems))
    try:
        menu_json = rich_menu_object(menu, menu_areas(menu))
        with menu.image.open("rb") as handle:
            data = handle.read()
        checked = image_check(data, width=menu.width, height=menu.height)
    except (RichMenuJsonError, ImageRejected) as error:
        raise _StepFailed(step, " ".join(error.problems)) from None
    except OSError:
        raise _StepFailed(step, _("画像ファイルを読み込めませんでした。画像をもう一度登録してください。")) from None
    return menu_json, data, checked.content_type


def _alias_point(line: LineClient, alias_id: str, done: _Done) -> None:
    step = _("エイリアスの設定")
    current = line.rich_menu_alias(alias_id)
    if current.result.ok:
        done.alias_before = current.rich_menu_id
        _check(step, line.rich_menu_alias_update(alias_id, done.new_id))
    elif current.result.status == 404:
        _check(step, line.rich_menu_alias_create(alias_id, done.new_id))
    else:
        _check(step, current.result)
    done.alias_id = alias_id


def _residents_move(line: LineClient, old_id: str, done: _Done, *, now: datetime) -> None:
    """Residents linked to the old LINE menu get the new one, 500 a call; each accepted chunk is recorded."""
    links = list(RichMenuLink.objects.filter(line_rich_menu_id=old_id).select_related("line_user").order_by("pk"))
    for start in range(0, len(links), linking.LINK_CHUNK_SIZE):
        chunk = links[start : start + linking.LINK_CHUNK_SIZE]
        _bulk_turn()
        result = line.rich_menu_link_users(done.new_id, [link.line_user.line_user_id for link in chunk])
        _check(_("住民のメニューの付け替え"), result)
        RichMenuLink.objects.filter(pk__in=[link.pk for link in chunk]).update(
            line_rich_menu_id=done.new_id, linked_at=now
        )
        done.moved += chunk


def _bulk_turn() -> None:
    """Take a turn from LINE's bulk-link rate limit, waiting for the next one-second window if needed.

    Unlike the reconciler, a deploy cannot hand its half-moved residents to a later task (the old menu
    is deleted only when all have moved), so this rare, staff-started job waits instead.
    """
    while wait := ratelimit.acquire(ratelimit.RICH_MENU_BULK):
        time.sleep(wait)


def _hourly_turn(step: str, operation: str) -> None:
    """Take one of LINE's hourly calls for creating (or deleting) rich menus, or fail the step saying when to retry."""
    wait = ratelimit.acquire(operation)
    if wait:
        minutes = max(math.ceil(wait / 60), 1)
        raise _StepFailed(
            step,
            _("LINE の上限（1時間に%(limit)s回）に達しています。%(minutes)s分後にもう一度反映してください。")
            % {"limit": settings.LINE_RATE_LIMITS[operation], "minutes": minutes},
        )


def _menu_delete(line: LineClient, rich_menu_id: str) -> SendResult:
    """Delete a menu on LINE within the hourly limit; over it, a failed result without calling LINE."""
    try:
        _hourly_turn(_("LINE からのメニュー削除"), ratelimit.RICH_MENU_DELETE)
    except _StepFailed as failure:
        return SendResult(status=None, error=failure.message, request_sent=False)
    return line.rich_menu_delete(rich_menu_id)


def _shown_by_default(menu: RichMenu) -> bool:
    disaster = linking.disaster_mode_menu()
    if disaster is not None:
        return disaster.pk == menu.pk
    return menu.role == RichMenu.Role.DEFAULT


def _undo(line: LineClient, done: _Done, *, old_id: str, now: datetime) -> str:
    """Put LINE back as it was; a note for staff when something could not be undone."""
    keep_new = False
    notes = []
    for start in range(0, len(done.moved), linking.LINK_CHUNK_SIZE):
        chunk = done.moved[start : start + linking.LINK_CHUNK_SIZE]
        _bulk_turn()
        result = line.rich_menu_link_users(old_id, [link.line_user.line_user_id for link in chunk])
        if result.ok:
            RichMenuLink.objects.filter(pk__in=[link.pk for link in chunk]).update(
                line_rich_menu_id=old_id, linked_at=now
            )
        else:
            keep_new = True
    if keep_new:
        notes.append(_("一部の住民を元のメニューに戻せなかったため、新しいメニューは残しています。"))
    if done.alias_id:
        restored = (
            line.rich_menu_alias_update(done.alias_id, done.alias_before)
            if done.alias_before
            else line.rich_menu_alias_delete(done.alias_id)
        )
        if not restored.ok:
            keep_new = True
            notes.append(_("エイリアスを元に戻せなかったため、新しいメニューは残しています。"))
    if done.new_id and not keep_new:
        deleted = _menu_delete(line, done.new_id)
        if not deleted.ok:
            notes.append(_("作りかけのメニュー（%(id)s）を LINE から削除できませんでした。") % {"id": done.new_id})
    return "".join(notes)


@dataclass
class LeftOver:
    deleted: int = 0
    kept: int = 0  # left for the next run: LINE refused, or the hour's deletes are used up
    error: str = ""  # LINE's list could not be read


def rich_menus_left_over_delete(*, now: datetime) -> LeftOver:
    """Delete the LINE menus this system made that nothing uses any more (nightly, within the limit).

    A replaced menu whose delete LINE refused, or that the hourly limit held back, stays on LINE and
    counts against the channel's cap of rich menus. Candidates are only the menus in the deploy
    history (another tool's menus on the same channel are never touched), and never one that is
    live, LINE's default, behind any alias, linked to residents by this system, or made by a
    deployment that started less than RUNNING_STALE_AFTER ago, whatever its status.
    """
    outcome = LeftOver()
    # The deploy history first: a deploy finishing while this reads (its menu becoming live) is
    # then protected as recent even if the read of live menus below came before its commit.
    history = RichMenuDeployment.objects.all()
    ours = set(history.values_list("line_rich_menu_id", flat=True)) | set(
        history.values_list("replaced_line_rich_menu_id", flat=True)
    )
    in_use = set(history.filter(started_at__gte=now - RUNNING_STALE_AFTER).values_list("line_rich_menu_id", flat=True))
    in_use |= set(RichMenu.objects.values_list("line_rich_menu_id", flat=True))
    in_use |= set(RichMenuLink.objects.values_list("line_rich_menu_id", flat=True))
    with LineClient() as line:
        listed, line_ids = line.rich_menu_ids()
        default = line.rich_menu_default()
        aliases_read, aliases = line.rich_menu_alias_targets()
        reads = [("list of menus", listed), ("aliases", aliases_read)]
        if default.result.status != 404:  # 404: no default menu is set
            reads.append(("default menu", default.result))
        for what, result in reads:
            if not result.ok:
                outcome.error = linking.line_error(result)
                logger.warning("left-over rich menus: LINE's %s could not be read (%s)", what, result.status)
                return outcome
        in_use |= {default.rich_menu_id, *aliases.values()}
        left_over = sorted((set(line_ids) & ours) - in_use - {""})
        for index, rich_menu_id in enumerate(left_over):
            deleted = _menu_delete(line, rich_menu_id)
            if deleted.ok or deleted.status == 404:
                outcome.deleted += 1
                continue
            logger.warning("left-over rich menu %s not deleted (%s)", rich_menu_id, deleted.status)
            outcome.kept += 1
            if not deleted.request_sent:  # the hour's deletes are used up: the rest wait for the next run
                outcome.kept += len(left_over) - index - 1
                break
    return outcome


def _deployment_finish(
    deployment: RichMenuDeployment,
    menu: RichMenu,
    *,
    done: _Done,
    old_id: str,
    error: str,
    edited_at: datetime | None = None,
) -> RichMenuDeployment:
    succeeded = not error
    with transaction.atomic():
        deployment.status = RichMenuDeployment.Status.SUCCEEDED if succeeded else RichMenuDeployment.Status.FAILED
        deployment.error = error
        deployment.line_rich_menu_id = done.new_id
        deployment.replaced_line_rich_menu_id = old_id
        deployment.finished_at = timezone.now()
        deployment.save()
        if succeeded:
            current = RichMenu.objects.filter(pk=menu.pk).values_list("updated_at", flat=True).first()
            RichMenu.objects.filter(pk=menu.pk).update(
                line_rich_menu_id=done.new_id,
                deployed_at=deployment.started_at,
                changed_since_deploy=current != edited_at,  # edited while it was being deployed
            )
            if menu.role == RichMenu.Role.SEGMENT:
                linking.rich_menu_links_reconcile_enqueue()
        audit_record(
            actor=deployment.actor,
            action=audit_actions.RICH_MENU_DEPLOY,
            obj=menu,
            details={
                "deployment_id": deployment.pk,
                "status": deployment.status,
                "line_rich_menu_id": done.new_id,
                "replaced_line_rich_menu_id": old_id,
            },
        )
    return deployment
