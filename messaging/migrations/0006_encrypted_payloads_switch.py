# The encrypted payloads replace the plain ones and become required. Rows that a still-running old
# process wrote after 0005 are encrypted first, in the same transaction as the switch; a row
# written after that makes the NOT NULL step fail and the whole migration roll back, never lose it.

from django.db import migrations

import govtech.crypto
from govtech.crypto import copy_columns


def encrypt_stragglers(apps, schema_editor):
    for name in ("InboxEvent", "OutboxMessage"):
        copy_columns(apps.get_model("messaging", name), {"payload": "payload_encrypted"}, missing_only=True)


class Migration(migrations.Migration):

    dependencies = [
        ("messaging", "0005_encrypted_payloads_fill"),
    ]

    operations = [
        migrations.RunPython(encrypt_stragglers, migrations.RunPython.noop, elidable=False),
        migrations.RemoveField(model_name="inboxevent", name="payload"),
        migrations.RemoveField(model_name="outboxmessage", name="payload"),
        migrations.RenameField(model_name="inboxevent", old_name="payload_encrypted", new_name="payload"),
        migrations.RenameField(model_name="outboxmessage", old_name="payload_encrypted", new_name="payload"),
        migrations.AlterField(
            model_name="inboxevent",
            name="payload",
            field=govtech.crypto.EncryptedJSONField(
                help_text="処理が終わる（または保留になる）と、住民が送った内容は消去されます。", verbose_name="イベント"
            ),
        ),
        migrations.AlterField(
            model_name="outboxmessage",
            name="payload",
            field=govtech.crypto.EncryptedJSONField(help_text="LINE に送るメッセージ（最大5件）。", verbose_name="メッセージ"),
        ),
    ]
