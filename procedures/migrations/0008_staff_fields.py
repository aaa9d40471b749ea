import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('procedures', '0007_application_channel_entered_by'),
    ]

    operations = [
        migrations.CreateModel(
            name='StaffField',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(help_text='値を保存する名前（半角英小文字・数字・_）。作成後は変更できません。', max_length=40, validators=[django.core.validators.RegexValidator('^[a-z][a-z0-9_]{0,39}$', '半角英小文字で始め、半角英小文字・数字・「_」で40文字以内にしてください。')], verbose_name='キー')),
                ('label', models.CharField(max_length=100, verbose_name='項目名')),
                ('kind', models.CharField(choices=[('text', '短い文章'), ('long_text', '長い文章'), ('date', '日付'), ('number', '数値'), ('yes_no', 'はい／いいえ'), ('choice', '選択（1つ）')], default='text', max_length=20, verbose_name='種類')),
                ('choices', models.TextField(blank=True, help_text='「選択（1つ）」のとき、1行に1つ。', verbose_name='選択肢')),
                ('order', models.PositiveIntegerField(default=0, verbose_name='並び順')),
                ('procedure', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='staff_fields', to='procedures.procedure', verbose_name='手続き')),
            ],
            options={
                'verbose_name': '管理項目',
                'verbose_name_plural': '管理項目',
                'ordering': ['order', 'id'],
                'constraints': [models.UniqueConstraint(fields=('procedure', 'key'), name='staff_field_key_unique')],
            },
        ),
        migrations.AddField(
            model_name='application',
            name='staff_values',
            field=models.JSONField(blank=True, default=dict, verbose_name='管理項目'),
        ),
    ]
