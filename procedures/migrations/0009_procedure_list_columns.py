from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('procedures', '0008_staff_fields'),
    ]

    operations = [
        migrations.AddField(
            model_name='procedure',
            name='list_columns',
            field=models.JSONField(blank=True, default=list, verbose_name='一覧に表示する回答'),
        ),
    ]
