"""Schedule the departments' daily digest mail (procedures.tasks.send_department_digests) at 07:00.

Each run sends the previous day's digest to the departments that chose it (and skips any that
already got it). Re-running the migration keeps one schedule.
"""

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "Procedures: daily digest mail to departments"
RUN_AT = dt.time(7, 0)


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
            "func": "procedures.tasks.send_department_digests",
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
        ("procedures", "0009_procedure_list_columns"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
