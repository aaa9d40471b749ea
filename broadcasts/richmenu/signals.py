"""A resident's attributes or receive settings changed: their segment menu may have too.

Connected in BroadcastsConfig.ready(). Listening to ProfileChange keeps residents unaware of rich
menus; the relinking runs in a worker once the change is committed.
"""

from django.db.models.signals import post_save
from django.dispatch import receiver

from broadcasts.richmenu.linking import rich_menu_link_resident_enqueue
from messaging.models import LineUser
from messaging.signals import line_user_followed
from residents.models import ProfileChange


@receiver(post_save, sender=ProfileChange, dispatch_uid="broadcasts.richmenu.profile_change_relink")
def profile_change_relink(sender, instance: ProfileChange, created: bool, raw: bool = False, **kwargs) -> None:
    if not created or raw:
        return
    for line_user_id in LineUser.objects.filter(resident_id=instance.resident_id).values_list(
        "line_user_id", flat=True
    ):
        rich_menu_link_resident_enqueue(line_user_id)


@receiver(line_user_followed, dispatch_uid="broadcasts.richmenu.followed_relink")
def followed_relink(sender, line_user: LineUser, **kwargs) -> None:
    """Their segment menu or the disaster menu: the reconciler skipped them while they were not following."""
    rich_menu_link_resident_enqueue(line_user.line_user_id)
