"""Schedule the LINE sweep (messaging.tasks.sweep_inbox) every minute in django-q2.

The sweep wakes the inbox workers for events whose wake-up was lost and the outbox sender for
messages that are due (retries after a back-off, senders that died). The cluster (`qcluster`,
started by run_demo) runs it; re-running the migration keeps one schedule.
"""

from django.db import migrations

SCHEDULE_NAME = "LINE: sweep inbox and outbox"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "messaging.tasks.sweep_inbox",
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
        ("messaging", "0001_inbox_outbox"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
