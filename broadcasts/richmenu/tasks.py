"""django-q2 tasks of the rich menus on LINE: thin, each calls one service."""

import logging

from django.contrib.auth import get_user_model
from django.utils import timezone

from broadcasts.richmenu import deploy, disaster, linking

logger = logging.getLogger(__name__)


def rich_menu_deploy_task(menu_id: int, actor_id: int | None) -> str:
    """Queued by the admin's deploy button; the outcome is in the menu's deploy history."""
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        return deploy.rich_menu_deploy(menu_id=menu_id, actor=actor, now=timezone.now()).status
    except deploy.RichMenuDeployBusy:
        # A second press while the first deploy runs: that deploy's result is the answer.
        logger.info("rich menu %s: deploy already running, request dropped", menu_id)
        return "busy"


def rich_menus_deploy_all_task() -> int:
    """Queued when the demo starts: its fresh fake LINE has no menus yet."""
    return len(deploy.rich_menus_deploy_all(now=timezone.now()))


def rich_menu_links_reconcile_task() -> int:
    """Nightly (migration broadcasts/…_rich_menu_links_schedule): every follower gets their menu."""
    outcome = linking.rich_menu_links_reconcile(now=timezone.now())
    return outcome.linked + outcome.unlinked


def rich_menus_left_over_delete_task() -> int:
    """Nightly (migration broadcasts/…_rich_menu_left_over_schedule): menus nothing uses leave LINE."""
    return deploy.rich_menus_left_over_delete(now=timezone.now()).deleted


def rich_menu_link_resident_task(line_user_id: str) -> int:
    outcome = linking.rich_menu_link_resident(line_user_id=line_user_id, now=timezone.now())
    return outcome.linked + outcome.unlinked


def disaster_mode_switch_task(switch_id: int) -> str:
    return disaster.disaster_mode_switch_run(switch_id=switch_id, now=timezone.now()).status
