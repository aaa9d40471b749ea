"""Schedule the LINE profile refresh (residents.tasks.refresh_stale_profiles) every 10 minutes in django-q2.

Each run fetches a batch of profiles never fetched or older than a week (residents/line_services.py),
which also retries the fetches that failed after a follow. Re-running the migration keeps one schedule.
"""

from django.db import migrations

SCHEDULE_NAME = "Residents: refresh LINE profiles"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "residents.tasks.refresh_stale_profiles",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 10,
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("residents", "0002_profile_attributes_categories_segments"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
