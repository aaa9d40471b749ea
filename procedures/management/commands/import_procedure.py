"""`manage.py import_procedure <file> [--department CODE] [--prefix X] [--publish]`.

Creates a new procedure from a template file (docs/procedure-format.md) with
its content as a draft, and publishes it with --publish. The file's size is
checked before it is read (settings.PROCEDURE_IMPORT_MAX_BYTES). When the file
has any problem, every problem is printed with where it is, the command exits
with an error and nothing is written to the database.
"""

from __future__ import annotations

import os
import stat

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from procedures.services import ProblemsError, procedure_import, version_publish
from staff.models import Department

UTF8_BOM = b"\xef\xbb\xbf"


def _size_text(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} バイト"


def template_file_read(path: str, max_bytes: int) -> bytes:
    """The file's bytes, refusing anything that is not a regular file within the limit, before reading it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CommandError(f"ファイルが見つかりません: {path}") from None
    except OSError as error:
        raise CommandError(f"ファイルを開けません: {path}（{error.strerror or error}）") from None
    if not stat.S_ISREG(info.st_mode):
        raise CommandError(f"通常のファイルではありません: {path}")
    if info.st_size > max_bytes:
        raise CommandError(
            f"ファイルが大きすぎます（{_size_text(info.st_size)}）。上限は {_size_text(max_bytes)}"
            f"（{max_bytes} バイト、設定 PROCEDURE_IMPORT_MAX_BYTES）です。読み込みませんでした。"
        )
    try:
        with open(path, "rb") as handle:
            # Never more than the limit, even if the file grows after the check.
            raw = handle.read(max_bytes + 1)
    except OSError as error:
        raise CommandError(f"ファイルを読めません: {path}（{error.strerror or error}）") from None
    if len(raw) > max_bytes:
        raise CommandError(f"ファイルが大きすぎます。上限は {_size_text(max_bytes)} です。")
    if raw.startswith(UTF8_BOM):  # as saved by some Windows editors
        raw = raw[len(UTF8_BOM):]
    if b"\x00" in raw:
        raise CommandError("バイナリファイルのようです。手続きのテンプレート（UTF-8 の JSON テキスト）を指定してください。")
    return raw


class Command(BaseCommand):
    help = (
        "Import a procedure template file (JSON, docs/procedure-format.md) as a new procedure with a draft. "
        "Every problem is listed and nothing is written when the file has any."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The template file (UTF-8 JSON).")
        parser.add_argument("--department", metavar="CODE", help="Code of the department in charge (e.g. kankyo).")
        parser.add_argument(
            "--prefix",
            metavar="X",
            help="Receipt prefix for the new procedure (A-Z, 0-9, up to 12), instead of the template's.",
        )
        parser.add_argument("--publish", action="store_true", help="Publish the imported version right away.")

    def handle(self, *args, **options):
        department = None
        if options["department"]:
            department = Department.objects.filter(code=options["department"]).first()
            if department is None:
                codes = ", ".join(Department.objects.order_by("code").values_list("code", flat=True))
                raise CommandError(f"部署コード「{options['department']}」はありません。（ある部署: {codes or 'なし'}）")
        prefix = (options["prefix"] or "").strip().upper()
        max_bytes = settings.PROCEDURE_IMPORT_MAX_BYTES
        raw = template_file_read(options["file"], max_bytes)
        try:
            with transaction.atomic():
                procedure = procedure_import(
                    raw=raw, max_bytes=max_bytes, department=department, receipt_prefix=prefix
                )
                version = procedure.draft
                if options["publish"]:
                    version = version_publish(version=version)
        except ProblemsError as error:
            raise CommandError(self._problems_text(error.messages)) from None
        except RecursionError:
            raise CommandError("JSON の入れ子が深すぎます。テンプレートとして読み込めません。") from None
        state = "公開しました" if options["publish"] else "下書きとして作成しました"
        self.stdout.write(
            self.style.SUCCESS(
                f"{state}: {procedure.name}（接頭辞 {procedure.receipt_prefix}, id {procedure.pk}, 第{version.number}版）"
            )
        )

    @staticmethod
    def _problems_text(messages: list[str]) -> str:
        lines = [f"テンプレートに {len(messages)} 件の問題があります。何も登録していません。"]
        lines.extend(f"- {message}" for message in messages)
        return "\n".join(lines)
