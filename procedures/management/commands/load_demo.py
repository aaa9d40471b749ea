"""`manage.py load_demo`: the demo departments, procedures, residents' categories and attributes (idempotent)."""

from django.core.management.base import BaseCommand, CommandError

from broadcasts.richmenu.demo import demo_rich_menus_load
from procedures.demo import load_demo
from procedures.services import ProblemsError


class Command(BaseCommand):
    help = (
        "Create the demo departments (市民課, 環境衛生課), import and publish the demo procedures "
        "from procedures/templates_library/, and create the residents' categories and attributes with the "
        "受信設定 procedure, and the demo rich menus (city menu, parents' tab, disaster menu). "
        "Whatever already exists is left untouched."
    )

    def handle(self, *args, **options):
        try:
            results = load_demo()
        except ProblemsError as error:
            raise CommandError(
                "デモの手続きを読み込めませんでした:\n" + "\n".join(f"- {m}" for m in error.messages)
            ) from None
        menus = demo_rich_menus_load()
        self.stdout.write(f"リッチメニュー: {'、'.join(menu.name for menu in menus)}")
        for result in results:
            procedure = result.procedure
            if result.created:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"作成して公開しました: {procedure.name}（{result.receipt_prefix}, id {procedure.pk}）"
                    )
                )
            else:
                self.stdout.write(
                    f"既にあります（変更なし）: {procedure.name}（{result.receipt_prefix}, id {procedure.pk}）"
                )
