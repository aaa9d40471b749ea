import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('procedures', '0005_application_assignee_needs_action'),
    ]

    operations = [
        migrations.AddField(
            model_name='procedure',
            name='retention_days',
            field=models.PositiveIntegerField(default=1825, help_text='申請日からこの日数を過ぎた申請（回答・添付画像を含む）は、毎日の処理で削除されます。', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(36500)], verbose_name='保存期間（日）'),
        ),
    ]
