# Encrypts the existing answers into the columns 0012 added, a batch per transaction (not one
# transaction for the whole table). Interrupted, it can be run again: rows already filled are skipped.

from django.db import migrations

from govtech.crypto import copy_columns

APPLICATION = {"answers": "answers_encrypted", "computed": "computed_encrypted"}
SESSION = {"state": "state_encrypted"}


def encrypt_rows(apps, schema_editor):
    copy_columns(apps.get_model("procedures", "Application"), APPLICATION, missing_only=True)
    copy_columns(apps.get_model("procedures", "ConversationSession"), SESSION, missing_only=True)


def decrypt_rows(apps, schema_editor):
    reverse = {target: source for source, target in APPLICATION.items()}
    copy_columns(apps.get_model("procedures", "Application"), reverse, missing_only=False)
    copy_columns(apps.get_model("procedures", "ConversationSession"), {"state_encrypted": "state"}, missing_only=False)


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("procedures", "0012_encrypted_answers_add"),
    ]

    operations = [
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=False),
    ]
