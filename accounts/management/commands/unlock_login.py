"""manage.py unlock_login <user name>: lift a login lockout from the command line (recorded in the audit log)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from accounts import services


class Command(BaseCommand):
    help = "Lift a staff login lockout (recorded in the audit log)."

    def add_arguments(self, parser):
        parser.add_argument("username", help="the staff user name")

    def handle(self, *args, username, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(
                _("職員「%(username)s」は見つかりません。管理画面の職員一覧でユーザー名を確かめてください。")
                % {"username": username}
            )
        cleared = services.login_unlock(actor=None, user=user)
        self.stdout.write(
            _("職員「%(username)s」のログイン停止を解除しました（失敗の記録 %(cleared)d 件を消しました）。")
            % {"username": username, "cleared": cleared}
        )
