"""Schedule broadcasts.tasks.broadcast_runs_due_task every minute in django-q2.

It creates the run of every broadcast occurrence that is due (broadcasts/services.py) and hands it
to the preparing task. Re-running the migration keeps one schedule.
"""

from django.db import migrations

SCHEDULE_NAME = "Broadcasts: create the runs of due occurrences"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "broadcasts.tasks.broadcast_runs_due_task",
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
        ("broadcasts", "0004_campaign_reminder_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
