"""`manage.py fakeline`: the fake LINE API in the foreground, for the demo and for trying things by hand.

Serves LINE's Messaging API on 127.0.0.1: api.line.me on --port, api-data.line.me on --port + 1,
validating every request against LINE's OpenAPI specs exactly as the tests do, plus the control
API under /_fake/ on the first port (messaging/line/fakeline/control.py). Invalid requests are
printed loudly on stderr with what is wrong with them. Point the web server and the task cluster
at it with LINE_API_BASE_URL and LINE_API_DATA_BASE_URL. Stops on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from messaging.line.fakeline.server import FakeLineServer

DEFAULT_PORT = 8011
POLL_SECONDS = 0.25


class Command(BaseCommand):
    help = (
        "Run the fake LINE API (api.line.me on --port, api-data.line.me on --port + 1) on 127.0.0.1 "
        "with its control API under /_fake/. Validates every request like the tests do."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"API port (default {DEFAULT_PORT}).")
        parser.add_argument(
            "--any-token",
            action="store_true",
            help="Accept any bearer token, even when LINE_CHANNEL_ACCESS_TOKEN is set.",
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        port = options["port"]
        if not 1 <= port <= 65534:
            raise CommandError(f"--port must be between 1 and 65534 (the data host uses port + 1), got {port}")
        server = FakeLineServer(api_port=port, data_port=port + 1)
        token = settings.LINE_CHANNEL_ACCESS_TOKEN
        if token and not options["any_token"]:
            server.accept_tokens(token)
        try:
            server.start()
        except OSError as error:
            raise CommandError(
                f"Cannot listen on 127.0.0.1:{port} and :{port + 1} ({error.strerror or error}). "
                "Another fake LINE running? Choose other ports with --port."
            ) from None

        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._banner(server, token_checked=bool(token and not options["any_token"]))
        seen = 0
        try:
            while not stop.wait(POLL_SECONDS):
                seen = self._report(server, seen)
            self._report(server, seen)
        finally:
            server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Fake LINE stopped.")

    def _banner(self, server: FakeLineServer, *, token_checked: bool) -> None:
        tokens = "only LINE_CHANNEL_ACCESS_TOKEN" if token_checked else "any bearer token"
        lines = [
            "Fake LINE API (validates every request against LINE's OpenAPI specs)",
            f"  LINE_API_BASE_URL={server.url}",
            f"  LINE_API_DATA_BASE_URL={server.data_url}",
            f"  control API:  {server.control_url}/  (health, reply-tokens, users, contents, messages)",
            f"  accepts:      {tokens}",
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
        self.stdout.flush()

    def _report(self, server: FakeLineServer, seen: int) -> int:
        """Print the calls received since the last look: one line each, invalid ones loudly with their errors."""
        with server.state.lock:
            calls = server.state.calls
            seen = seen if len(calls) >= seen else 0  # reset() starts a new list
            new, total = calls[seen:], len(calls)
        for call in new:
            what = call.operation_id or "unknown operation"
            if call.invalid:
                self.stderr.write(self.style.ERROR(f"fake LINE: INVALID REQUEST ({what}) {call.describe()}"))
            elif self.verbosity >= 1:
                to = f" -> {', '.join(call.recipients)[:80]}" if call.recipients else ""
                self.stdout.write(f"fake LINE: {call.method} {call.path} ({what}) {call.status}{to}")
        if new:
            self.stdout.flush()
            self.stderr.flush()
        return total
