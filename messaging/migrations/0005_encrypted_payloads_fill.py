# Encrypts the existing payloads into the columns 0004 added, a batch per transaction. Interrupted,
# it can be run again: rows already filled are skipped.

from django.db import migrations

from govtech.crypto import copy_columns

MODELS = ("InboxEvent", "OutboxMessage")


def encrypt_rows(apps, schema_editor):
    for name in MODELS:
        copy_columns(apps.get_model("messaging", name), {"payload": "payload_encrypted"}, missing_only=True)


def decrypt_rows(apps, schema_editor):
    for name in MODELS:
        copy_columns(apps.get_model("messaging", name), {"payload_encrypted": "payload"}, missing_only=False)


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("messaging", "0004_encrypted_payloads_add"),
    ]

    operations = [
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=False),
    ]
