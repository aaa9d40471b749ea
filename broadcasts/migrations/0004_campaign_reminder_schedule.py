"""Schedule the campaign reminders (broadcasts.campaign_tasks.remind_campaigns) every hour in django-q2.

The task reminds, once, the recipients who have not answered some days after the push, and closes
the campaigns whose deadline has passed. Re-running the migration keeps one schedule.
"""

from django.db import migrations

SCHEDULE_NAME = "Campaigns: reminders and closing"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "broadcasts.campaign_tasks.remind_campaigns",
            "schedule_type": "H",  # Schedule.HOURLY
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("broadcasts", "0003_rich_menus"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
