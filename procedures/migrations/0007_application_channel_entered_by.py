import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def mark_test_applications(apps, schema_editor):
    # Every application so far came from LINE, except the simulator's test applications.
    Application = apps.get_model("procedures", "Application")
    Application.objects.filter(is_test=True).update(channel="simulator")


class Migration(migrations.Migration):

    dependencies = [
        ('procedures', '0006_procedure_retention_days'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='application',
            name='channel',
            field=models.CharField(choices=[('line', 'LINE'), ('proxy', '代理入力（電話）'), ('simulator', 'シミュレーター')], default='line', max_length=20, verbose_name='受付方法'),
        ),
        migrations.AddField(
            model_name='application',
            name='entered_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='entered_applications', to=settings.AUTH_USER_MODEL, verbose_name='代理入力した職員'),
        ),
        migrations.RunPython(mark_test_applications, migrations.RunPython.noop),
    ]
