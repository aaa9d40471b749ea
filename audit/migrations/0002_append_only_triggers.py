"""Database triggers that refuse UPDATE and DELETE on the audit log (PostgreSQL and SQLite; see audit/db.py)."""

from django.db import migrations


def create_triggers(apps, schema_editor):
    from audit.db import create_triggers as create

    if schema_editor.connection.vendor in ("postgresql", "sqlite"):
        create(schema_editor.connection)


def drop_triggers(apps, schema_editor):
    from audit.db import drop_triggers as drop

    if schema_editor.connection.vendor in ("postgresql", "sqlite"):
        drop(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_audit_entries"),
    ]

    operations = [
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
