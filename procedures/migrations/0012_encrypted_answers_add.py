# Residents' answers move to encrypted columns (govtech/crypto.py) in three steps: add nullable
# columns, fill them, then drop the plain columns and take their names.

from django.db import migrations

import govtech.crypto


class Migration(migrations.Migration):

    dependencies = [
        ("procedures", "0011_retention_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="application",
            name="answers_encrypted",
            field=govtech.crypto.EncryptedJSONField(null=True),
        ),
        migrations.AddField(
            model_name="application",
            name="computed_encrypted",
            field=govtech.crypto.EncryptedJSONField(null=True),
        ),
        migrations.AddField(
            model_name="conversationsession",
            name="state_encrypted",
            field=govtech.crypto.EncryptedJSONField(null=True),
        ),
    ]
