"""`manage.py export_procedure <receipt_prefix or id> [--version N] [-o file]`.

Writes a procedure as a shareable template (docs/procedure-format.md): the
envelope {"format", "format_version", "procedure"} with the spec, without
database ids. Without --version it exports the published version (or the
draft when nothing is published yet). Output is UTF-8 JSON, on standard output
unless -o is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from procedures.models import Procedure
from procedures.services import ProblemsError, procedure_export_data


def procedure_lookup(reference: str) -> Procedure:
    """A procedure by receipt prefix (case-insensitive) or, for a number, by id."""
    reference = reference.strip()
    procedure = Procedure.objects.filter(receipt_prefix=reference.upper()).first() if reference else None
    if procedure is None and reference.isdigit():
        procedure = Procedure.objects.filter(pk=int(reference)).first()
    if procedure is None:
        known = ", ".join(Procedure.objects.order_by("receipt_prefix").values_list("receipt_prefix", flat=True))
        raise CommandError(
            f"手続き「{reference}」が見つかりません。受付番号の接頭辞か id を指定してください。"
            f"（登録済みの接頭辞: {known or 'なし'}）"
        )
    return procedure


class Command(BaseCommand):
    help = "Export a procedure as a template file (JSON, docs/procedure-format.md)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version N` is this command's own option; it replaces Django's --version (print Django's version).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("procedure", help="Receipt prefix (e.g. SODAI) or id of the procedure.")
        parser.add_argument(
            "--version",
            dest="version_number",
            type=int,
            help="Version number to export (default: the published version, or the draft if none is published).",
        )
        parser.add_argument("-o", "--output", help="File to write (UTF-8). Default: standard output.")

    def handle(self, *args, **options):
        procedure = procedure_lookup(options["procedure"])
        version = None
        if options["version_number"] is not None:
            version = procedure.versions.filter(number=options["version_number"]).first()
            if version is None:
                numbers = ", ".join(str(n) for n in procedure.versions.order_by("number").values_list("number", flat=True))
                raise CommandError(
                    f"「{procedure.name}」に第{options['version_number']}版はありません。（ある版: {numbers or 'なし'}）"
                )
        try:
            data = procedure_export_data(procedure=procedure, version=version)
        except ProblemsError as error:
            raise CommandError("\n".join(error.messages)) from None
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        output = options["output"]
        if output and output != "-":
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as error:
                raise CommandError(f"{output} に書き込めません: {error.strerror or error}") from None
            self.stdout.write(f"書き出しました: {output}（{procedure.name}）")
        else:
            self.stdout.write(text, ending="")
