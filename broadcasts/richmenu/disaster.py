"""Disaster mode: every resident sees the disaster menu, and back to normal afterwards.

Switching on makes the disaster menu LINE's default menu and links it to every follower (500 a
call): a per-user link, a segment menu or a tab a resident switched to, would otherwise hide it.
Switching off restores the default menu and gives each follower back their segment menu (the
reconciler's plan, which reads the mode from the latest switch). Both are the same plan-and-apply
of linking.py, so a run is idempotent: run again after a failure, it sends only what is left.

The switch row carries the progress the admin polls (`disaster_mode_progress`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from audit import actions as audit_actions
from audit.services import audit_record
from broadcasts.richmenu import linking
from broadcasts.richmenu.models import DisasterModeSwitch, RichMenu
from messaging.line.client import LineClient

SWITCH_TASK = "broadcasts.richmenu.tasks.disaster_mode_switch_task"
# A switch still running after this was cut short (each run hands over to a new task well before).
SWITCH_STALE_AFTER = timedelta(minutes=30)


class DisasterModeProblem(ValueError):
    pass


@transaction.atomic
def disaster_mode_switch(*, direction: str, menu_id: int, actor, now: datetime) -> DisasterModeSwitch:
    """Start switching to the disaster menu (`direction` "on") or back ("off"); the work runs in a task.

    Asking again while the same switch runs returns it (a double click, a retry); asking for the other
    direction while one runs is refused.
    """
    if direction not in DisasterModeSwitch.Direction.values:
        raise DisasterModeProblem(_("切り替えの向きが正しくありません。"))
    # Locking the disaster menus serialises switch requests.
    menus = {menu.pk: menu for menu in RichMenu.objects.select_for_update().filter(role=RichMenu.Role.DISASTER)}
    menu = menus.get(menu_id)
    if menu is None:
        raise DisasterModeProblem(_("用途が「災害時」のメニューを選んでください。"))
    if direction == DisasterModeSwitch.Direction.ON and not menu.line_rich_menu_id:
        raise DisasterModeProblem(_("災害時メニュー「%(name)s」を先に LINE に反映してください。") % {"name": menu.name})
    running = DisasterModeSwitch.objects.filter(status=DisasterModeSwitch.Status.RUNNING).first()
    if running is not None and running.direction == direction and running.menu_id == menu.pk:
        # Asked again (a double click, or its task was lost with a dead worker): the run is
        # idempotent and goes on from where LINE is, so queue it again.
        disaster_mode_switch_enqueue(running.pk)
        return running
    if running is not None and running.started_at < now - SWITCH_STALE_AFTER:
        _finish(running, status=DisasterModeSwitch.Status.FAILED, error=_("作業が止まっていたため中断しました。"))
    elif running is not None:
        raise DisasterModeProblem(_("切り替えの途中です。終わってからもう一度お試しください。"))
    switch = DisasterModeSwitch.objects.create(
        direction=direction,
        menu=menu,
        actor=actor if getattr(actor, "pk", None) else None,
        started_at=now,
        residents_total=linking.line_users_following().count(),
    )
    audit_record(
        actor=actor,
        action=audit_actions.RICH_MENU_DISASTER_MODE,
        obj=menu,
        details={"switch_id": switch.pk, "direction": direction},
    )
    disaster_mode_switch_enqueue(switch.pk)
    return switch


def disaster_mode_switch_enqueue(switch_id: int) -> None:
    transaction.on_commit(lambda: async_task(SWITCH_TASK, switch_id), robust=True)


def _default_menu_set(line: LineClient, switch: DisasterModeSwitch):
    if switch.direction == DisasterModeSwitch.Direction.ON:
        return line.rich_menu_default_set(switch.menu.line_rich_menu_id)
    default = linking.default_menu_live()
    return line.rich_menu_default_set(default.line_rich_menu_id) if default else line.rich_menu_default_cancel()


def _finish(switch: DisasterModeSwitch, *, status: str, error: str = "") -> DisasterModeSwitch:
    switch.status, switch.error, switch.finished_at = status, error, timezone.now()
    switch.save(update_fields=["status", "error", "finished_at", "residents_done"])
    return switch


def disaster_mode_switch_run(*, switch_id: int, now: datetime) -> DisasterModeSwitch:
    """The task: set the default menu, then link (or give back) every follower's menu, with progress.

    Runs out of time in a big city: it then enqueues itself and the next run goes on from the plan.
    """
    switch = DisasterModeSwitch.objects.select_related("menu").get(pk=switch_id)
    if switch.status != DisasterModeSwitch.Status.RUNNING:
        return switch
    latest = linking.disaster_mode_switch_latest()
    if latest is not None and latest.pk != switch.pk:
        return _finish(
            switch, status=DisasterModeSwitch.Status.FAILED, error=_("新しい切り替えが始まったため中止しました。")
        )
    with LineClient() as line:
        result = _default_menu_set(line, switch)
        if not result.ok:
            error = _("標準メニューの設定で失敗しました（%(error)s）。") % {"error": linking.line_error(result)}
            return _finish(switch, status=DisasterModeSwitch.Status.FAILED, error=error)
        followers = linking.line_users_following()
        changes = linking.links_plan(followers)
        switch.residents_total = followers.count()
        switch.residents_done = max(switch.residents_total - len(changes), 0)
        switch.save(update_fields=["residents_total", "residents_done"])

        def progress(chunk, result) -> None:
            if result.ok:
                switch.residents_done = min(switch.residents_done + len(chunk), switch.residents_total)
                DisasterModeSwitch.objects.filter(pk=switch.pk).update(residents_done=switch.residents_done)

        outcome = linking.links_apply(line, changes, now=now, on_chunk=progress, deadline=linking.task_deadline())
    if outcome.out_of_time:
        disaster_mode_switch_enqueue(switch.pk)
        return switch
    if outcome.errors:
        error = _("%(count)s 人を切り替えられませんでした（%(error)s）。もう一度実行すると残りを切り替えます。") % {
            "count": outcome.failed,
            "error": outcome.errors[0],
        }
        return _finish(switch, status=DisasterModeSwitch.Status.FAILED, error=error)
    return _finish(switch, status=DisasterModeSwitch.Status.DONE)


def disaster_mode_progress(switch: DisasterModeSwitch) -> dict:
    """What the admin polls (JSON): where the switch is, in numbers and words."""
    switch = DisasterModeSwitch.objects.select_related("menu").get(pk=switch.pk)
    total, done = switch.residents_total, switch.residents_done
    finished = switch.status != DisasterModeSwitch.Status.RUNNING
    if total:
        percent = min(100, done * 100 // total)
    else:
        percent = 100 if finished else 0
    return {
        "id": switch.pk,
        "direction": switch.direction,
        "direction_label": switch.get_direction_display(),
        "menu": switch.menu.name,
        "status": switch.status,
        "status_label": switch.get_status_display(),
        "finished": finished,
        "residents_total": total,
        "residents_done": done,
        "percent": percent,
        "error": switch.error,
        "started_at": switch.started_at.isoformat(),
        "finished_at": switch.finished_at.isoformat() if switch.finished_at else None,
    }
