# The encrypted columns replace the plain ones and become required. Rows that a still-running old
# process wrote after 0013 are encrypted first, in the same transaction as the switch; a row
# written after that makes the NOT NULL step fail and the whole migration roll back, never lose it.

from django.db import migrations

import govtech.crypto
from govtech.crypto import copy_columns


def encrypt_stragglers(apps, schema_editor):
    copy_columns(
        apps.get_model("procedures", "Application"),
        {"answers": "answers_encrypted", "computed": "computed_encrypted"},
        missing_only=True,
    )
    copy_columns(apps.get_model("procedures", "ConversationSession"), {"state": "state_encrypted"}, missing_only=True)


class Migration(migrations.Migration):

    dependencies = [
        ("procedures", "0013_encrypted_answers_fill"),
    ]

    operations = [
        migrations.RunPython(encrypt_stragglers, migrations.RunPython.noop, elidable=False),
        migrations.RemoveField(model_name="application", name="answers"),
        migrations.RemoveField(model_name="application", name="computed"),
        migrations.RemoveField(model_name="conversationsession", name="state"),
        migrations.RenameField(model_name="application", old_name="answers_encrypted", new_name="answers"),
        migrations.RenameField(model_name="application", old_name="computed_encrypted", new_name="computed"),
        migrations.RenameField(model_name="conversationsession", old_name="state_encrypted", new_name="state"),
        migrations.AlterField(
            model_name="application",
            name="answers",
            field=govtech.crypto.EncryptedJSONField(default=dict, verbose_name="回答"),
        ),
        migrations.AlterField(
            model_name="application",
            name="computed",
            field=govtech.crypto.EncryptedJSONField(default=dict, verbose_name="計算項目"),
        ),
        migrations.AlterField(
            model_name="conversationsession",
            name="state",
            field=govtech.crypto.EncryptedJSONField(default=dict),
        ),
    ]
