"""Re-encrypt every encrypted column with the first key of GOVTECH_ENCRYPTION_KEYS.

Step 3 of a key rotation (docs/operations.md): after the new key was put first and deployed, and
before the old key is removed. Values already encrypted with the first key are left alone, so
running it again (after an interruption, or to check) changes nothing.
"""

from django.core.management.base import BaseCommand, CommandError

from govtech.crypto import UndecryptableValue, encrypted_fields, rotate_model


class Command(BaseCommand):
    help = "Re-encrypts residents' answers and LINE payloads with the first key of GOVTECH_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        total = 0
        for model, names in encrypted_fields():
            try:
                count = rotate_model(model, names, batch_size=batch_size)
            except UndecryptableValue as error:
                raise CommandError(str(error)) from None
            total += count.reencrypted
            self.stdout.write(
                f"{model._meta.label} ({', '.join(names)}): {count.rows} rows, {count.values} values, "
                f"{count.reencrypted} re-encrypted"
            )
        self.stdout.write(self.style.SUCCESS(f"done: {total} values re-encrypted with the first key"))
