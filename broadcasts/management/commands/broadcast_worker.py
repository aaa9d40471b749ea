"""`manage.py broadcast_worker`: a process that only sends broadcast chunks, in a loop.

The django-q2 cluster sends chunks too (task send_broadcast_chunks, woken when a run is prepared and by
the sweep); this worker is for a deployment that wants sending on its own machine, and for the test
that kills a sender in the middle of a call (broadcasts/tests/test_exactly_once.py). Any number may
run at once: chunks are claimed with FOR UPDATE SKIP LOCKED and a lease. Stops on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.core.management.base import BaseCommand

from broadcasts import selectors
from broadcasts.sending import CHUNK_LEASE, broadcast_chunks_send


class Command(BaseCommand):
    help = "Send due broadcast chunks in a loop (multicast with each chunk's retry key)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--lease-seconds",
            type=float,
            default=CHUNK_LEASE.total_seconds(),
            help="How long a claimed chunk is this worker's; after that another worker may send it again "
            "(same retry key). Keep it above LINE_API_TIMEOUT_SECONDS.",
        )
        parser.add_argument("--poll-seconds", type=float, default=1.0, help="Pause when nothing is due.")
        parser.add_argument(
            "--until-idle", action="store_true", help="Exit once no chunk of a sending run is left to send."
        )

    def handle(self, *args, **options):
        lease = timedelta(seconds=options["lease_seconds"])
        verbose = options["verbosity"] >= 2
        try:
            while True:
                outcome = broadcast_chunks_send(lease=lease)
                if verbose and any(vars(outcome).values()):
                    self.stdout.write(str(outcome))
                if outcome.sent or outcome.retrying or outcome.failed or outcome.lost:
                    continue
                if options["until_idle"] and not selectors.chunks_unsettled().exists():
                    return
                time.sleep(options["poll_seconds"])
        except KeyboardInterrupt:
            return
