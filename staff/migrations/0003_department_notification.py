from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('staff', '0002_roles_and_grants'),
    ]

    operations = [
        migrations.AddField(
            model_name='department',
            name='notification_email',
            field=models.EmailField(blank=True, help_text='新しい申請を知らせるメールの宛先。メールには受付番号と手続き名だけを書き、回答や氏名は書きません。', max_length=254, verbose_name='通知先メールアドレス'),
        ),
        migrations.AddField(
            model_name='department',
            name='notification_mode',
            field=models.CharField(choices=[('none', '送らない'), ('each', '申請ごとに送る'), ('daily', '1日分をまとめて翌朝送る')], default='none', max_length=20, verbose_name='メール通知'),
        ),
        migrations.AddField(
            model_name='department',
            name='notification_digest_date',
            field=models.DateField(blank=True, editable=False, null=True),
        ),
    ]
