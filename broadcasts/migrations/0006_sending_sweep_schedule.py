"""Schedule broadcasts.tasks.sweep_broadcasts every minute in django-q2.

The sweep prepares runs whose wake-up was lost (or whose LINE quota could not be read) and wakes
the chunk sender for chunks due again: a back-off that is over, a sender that died (its lease ran
out). Re-running the migration keeps one schedule.
"""

from django.db import migrations

SCHEDULE_NAME = "Broadcasts: sweep runs and chunks"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "broadcasts.tasks.sweep_broadcasts",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 1,
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("broadcasts", "0005_runs_due_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
