"""Constrain: every application has a status (0003 gave existing ones their procedure's initial status)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("procedures", "0003_application_status_fill"),
    ]

    operations = [
        migrations.AlterField(
            model_name="application",
            name="status",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="applications",
                to="procedures.applicationstatus",
                verbose_name="状態",
            ),
        ),
    ]
