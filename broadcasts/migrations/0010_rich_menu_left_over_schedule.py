"""Schedule the deletion of left-over LINE rich menus
(broadcasts.richmenu.tasks.rich_menus_left_over_delete_task) daily at 04:30.

A replaced menu that LINE refused to delete, or that the hourly delete limit held back, stays on
LINE and counts against the channel's cap of rich menus; the nightly run removes the ones this
system made and nothing uses (broadcasts/richmenu/deploy.py). After the 04:00 reconcile, which may
still move residents off a menu. Re-running the migration keeps one schedule.
"""

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "Rich menus: delete left-over menus on LINE"
RUN_AT = dt.time(4, 30)


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
            "func": "broadcasts.richmenu.tasks.rich_menus_left_over_delete_task",
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
        ("broadcasts", "0009_broadcast_returned_reason"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
