"""Schedule the rich menu links reconciler (broadcasts.richmenu.tasks.rich_menu_links_reconcile_task)
daily at 04:00.

Residents move in and out of segments as their attributes change and as time passes (dates in
rules); the nightly run gives every follower the menu they should see, sending only differences
(broadcasts/richmenu/linking.py). Re-running the migration keeps one schedule.
"""

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "Rich menus: reconcile per-segment menus"
RUN_AT = dt.time(4, 0)


def _next(at: dt.time):
    tz = ZoneInfo("Asia/Tokyo")
    now = timezone.now().astimezone(tz)
    run = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return run if run > now else run + dt.timedelta(days=1)


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "broadcasts.richmenu.tasks.rich_menu_links_reconcile_task",
            "schedule_type": "D",  # Schedule.DAILY
            "repeats": -1,
            "next_run": _next(RUN_AT),
        },
    )


def delete_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("broadcasts", "0006_sending_sweep_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
