# Inbox events keep what a resident typed until processed, outbox messages what the city shows them
# (their non-sensitive answers included): both payloads move to encrypted columns
# (govtech/crypto.py) in three steps: add nullable columns, fill them, then switch.
# The plain columns become nullable here too, so that going back (which re-adds them empty before
# the fill's reverse copies the payloads back) works on tables that have rows.

from django.db import migrations, models

import govtech.crypto


class Migration(migrations.Migration):

    dependencies = [
        ("messaging", "0003_outbox_unknown_status"),
    ]

    operations = [
        migrations.AlterField(
            model_name="inboxevent",
            name="payload",
            field=models.JSONField(
                help_text="処理が終わる（または保留になる）と、住民が送った内容は消去されます。",
                null=True,
                verbose_name="イベント",
            ),
        ),
        migrations.AlterField(
            model_name="outboxmessage",
            name="payload",
            field=models.JSONField(help_text="LINE に送るメッセージ（最大5件）。", null=True, verbose_name="メッセージ"),
        ),
        migrations.AddField(
            model_name="inboxevent",
            name="payload_encrypted",
            field=govtech.crypto.EncryptedJSONField(null=True),
        ),
        migrations.AddField(
            model_name="outboxmessage",
            name="payload_encrypted",
            field=govtech.crypto.EncryptedJSONField(null=True),
        ),
    ]
