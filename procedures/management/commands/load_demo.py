"""`manage.py load_demo`: the demo departments and the two published demo procedures (idempotent)."""

from django.core.management.base import BaseCommand, CommandError

from procedures.demo import load_demo
from procedures.services import ProblemsError


class Command(BaseCommand):
    help = (
        "Create the demo departments (市民課, 環境衛生課) and import and publish the demo procedures "
        "from procedures/templates_library/. Procedures that already exist are left untouched."
    )

    def handle(self, *args, **options):
        try:
            results = load_demo()
        except ProblemsError as error:
            raise CommandError("デモの手続きを読み込めませんでした:\n" + "\n".join(f"- {m}" for m in error.messages)) from None
        for result in results:
            procedure = result.procedure
            if result.created:
                self.stdout.write(
                    self.style.SUCCESS(f"作成して公開しました: {procedure.name}（{result.receipt_prefix}, id {procedure.pk}）")
                )
            else:
                self.stdout.write(f"既にあります（変更なし）: {procedure.name}（{result.receipt_prefix}, id {procedure.pk}）")
