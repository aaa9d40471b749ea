"""`manage.py create_receive_settings_procedure`: the 受信設定 procedure from the current categories."""

from django.core.management.base import BaseCommand, CommandError

from procedures.services import ProblemsError
from residents.receive_settings import receive_settings_procedure_create
from staff.models import Department


class Command(BaseCommand):
    help = (
        "Create and publish the 受信設定 procedure (keyword 受信設定) from the active categories and the "
        "district attribute (key district or named 地区) if there is one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--department", default="", help="Code of the department that owns it (default: none).")

    def handle(self, *args, department="", **options):
        owner = None
        if department:
            owner = Department.objects.filter(code=department).first()
            if owner is None:
                raise CommandError(f"部署コード「{department}」の部署がありません。")
        try:
            procedure = receive_settings_procedure_create(department=owner)
        except ProblemsError as error:
            raise CommandError(
                "受信設定の手続きを作成できませんでした:\n" + "\n".join(f"- {m}" for m in error.messages)
            ) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"作成して公開しました: {procedure.name}（{procedure.receipt_prefix}, id {procedure.pk}）"
            )
        )
