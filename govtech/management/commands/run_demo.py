"""`make run`: the whole demo on one machine.

Migrates (keeping existing data), loads the demo procedures when the
`load_demo` command exists, makes sure the demo staff login works, then runs
the django-q2 cluster and the development web server side by side until one
of them stops or the demo is interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError

from govtech.demo import ensure_demo_staff, password_file

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 15
READY_TIMEOUT_SECONDS = 60


def _port() -> int:
    raw = os.environ.get("DEMO_PORT", "8000").strip() or "8000"
    try:
        port = int(raw)
    except ValueError:
        raise CommandError(f"DEMO_PORT must be a port number, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise CommandError(f"DEMO_PORT must be between 1 and 65535, got {port}")
    return port


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if the demo process dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:  # noqa: S110 - best effort; not available off Linux
        pass


class Command(BaseCommand):
    help = "Run the local demo: migrate, demo data, demo login, task cluster and web server."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="Prepare the database and the demo login, then exit without starting the servers.",
        )

    def handle(self, *args, **options):
        if not settings.DEMO_MODE:
            raise CommandError(
                "run_demo only runs in demo mode. Start it with `make run`, or set GOVTECH_DEMO=1 "
                "in the environment before Django starts (settings read it at import)."
            )
        port = _port()
        self._prepare()
        try:
            login = ensure_demo_staff()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if options["no_serve"]:
            self._banner(login, port)
            return
        self._serve(login, port)

    # ------------------------------------------------------------------
    # Database and demo data.
    # ------------------------------------------------------------------

    def _prepare(self) -> None:
        # WhiteNoise serves the demo's static files from the apps (finders) but
        # still warns when STATIC_ROOT is missing.
        Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
        self.stdout.write(self.style.MIGRATE_HEADING("Migrating the demo database (existing data is kept)…"))
        call_command("migrate", interactive=False, verbosity=1, stdout=self.stdout)
        if "load_demo" in get_commands():
            self.stdout.write(self.style.MIGRATE_HEADING("Loading the demo procedures (load_demo)…"))
            call_command("load_demo", stdout=self.stdout)
        else:
            self.stdout.write("No load_demo command yet; skipping the demo procedures.")

    def _banner(self, login, port: int) -> None:
        base = f"http://{HOST}:{port}"
        lines = [
            "",
            "=" * 64,
            "LINE 市役所 demo",
            f"  Admin (staff):      {base}/admin/",
            f"  Resident simulator: {base}/procedures/simulator/",
            f"  Login:              {login.username} / {login.password}",
            f"  (password kept in {password_file()}; delete it to get a new one)",
            "  Stop with Ctrl-C.",
            "=" * 64,
            "",
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
        self.stdout.flush()

    # ------------------------------------------------------------------
    # The two child processes.
    # ------------------------------------------------------------------

    def _spawn(self, name: str, arguments: list[str]) -> _Child:
        manage = Path(settings.BASE_DIR) / "manage.py"
        self.stdout.write(f"Starting the {name}: manage.py {' '.join(arguments)}")
        self.stdout.flush()
        # Own process group: a Ctrl-C in the terminal reaches only this process,
        # which forwards it once to each child.
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own manage.py
            [sys.executable, str(manage), *arguments],
            cwd=settings.BASE_DIR,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        return _Child(name, process)

    def _serve(self, login, port: int) -> None:
        if _port_in_use(port):
            raise CommandError(
                f"Port {port} on {HOST} is already in use (another demo running?). "
                "Stop it, or choose another port: DEMO_PORT=8001 make run"
            )
        stopping: list[int] = []
        children: list[_Child] = []

        def forward(signum, _frame):
            if not stopping:
                stopping.append(signum)
                self.stdout.write(f"\nStopping the demo ({signal.Signals(signum).name})…")
            for child in children:
                child.signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        failed = None
        try:
            children.append(self._spawn("task cluster", ["qcluster"]))
            if not stopping:
                children.append(self._spawn("web server", ["runserver", "--noreload", f"{HOST}:{port}"]))
            self._wait_until_ready(children, port, login, stopping)
            failed = self._wait_for_first_exit(children)
        finally:
            self._stop_all(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not stopping and failed is not None:
            raise CommandError(
                f"The {failed.name} stopped (exit status {failed.process.returncode}); the demo has been shut down."
            )
        self.stdout.write("Demo stopped.")

    def _wait_until_ready(self, children: list[_Child], port: int, login, stopping: list[int]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not stopping:
            if any(child.process.poll() is not None for child in children):
                return
            if _port_in_use(port):
                break
            time.sleep(0.2)
        if not stopping:
            self._banner(login, port)

    @staticmethod
    def _wait_for_first_exit(children: list[_Child]) -> _Child:
        while True:
            for child in children:
                if child.process.poll() is not None:
                    return child
            time.sleep(0.2)

    def _stop_all(self, children: list[_Child]) -> None:
        for child in children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"The {child.name} did not stop within {STOP_GRACE_SECONDS}s; killing it.")
                child.kill_group()
                child.process.wait()
        # Whatever a child left behind in its process group (the task workers).
        for child in children:
            child.kill_group()


class _Child:
    """One child process and whether it has been asked to stop."""

    def __init__(self, name: str, process: subprocess.Popen):
        self.name = name
        self.process = process
        self.signaled = False

    def signal(self, signum: int) -> None:
        """Send `signum` once: a second signal would cut the child's graceful stop short."""
        if self.signaled or self.process.poll() is not None:
            return
        self.signaled = True
        try:
            self.process.send_signal(signum)
        except ProcessLookupError:
            pass

    def kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0
