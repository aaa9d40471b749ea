"""`make run`: the whole demo on one machine.

Migrates (keeping existing data), loads the demo procedures when the
`load_demo` command exists, makes sure the demo staff login works, then runs
the fake LINE API (`manage.py fakeline`), the django-q2 cluster and the
development web server side by side until one of them stops or the demo is
interrupted (Ctrl-C / SIGTERM).

The fake LINE starts first, on DEMO_LINE_PORT (default DEMO_PORT + 11) and the
port after it; the web server and the cluster get LINE_API_BASE_URL,
LINE_API_DATA_BASE_URL and a demo channel secret and access token (made once,
kept in VAR_DIR) in their environment. If the operator set any of the LINE
channel variables, the demo uses them as they are and starts no fake.
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
from django_q.tasks import async_task

from govtech.demo import (
    OPERATOR_LINE_VARIABLES,
    ensure_demo_line_channel,
    ensure_demo_staff,
    fake_line_environment,
    operator_line_variables,
    password_file,
)

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


def _line_port(port: int, environ=None) -> int:
    """The fake LINE's API port (its data port is the next one): DEMO_LINE_PORT, else DEMO_PORT + 11."""
    environ = os.environ if environ is None else environ
    raw = (environ.get("DEMO_LINE_PORT") or "").strip()
    if not raw:
        line_port = port + 11
        if line_port > 65534:
            raise CommandError(f"DEMO_PORT {port} leaves no room for the fake LINE; set DEMO_LINE_PORT too")
        return line_port
    try:
        line_port = int(raw)
    except ValueError:
        raise CommandError(f"DEMO_LINE_PORT must be a port number, got {raw!r}") from None
    if not 1 <= line_port <= 65534:
        raise CommandError(f"DEMO_LINE_PORT must be between 1 and 65534 (it uses the next port too), got {line_port}")
    if port in (line_port, line_port + 1):
        raise CommandError(f"DEMO_LINE_PORT {line_port} and the next port must differ from DEMO_PORT {port}")
    return line_port


class LinePlan:
    """How the demo talks to LINE: the fake on `fake_port` (with `environment` for the children) or the
    operator's channel (`fake_port` None, nothing added)."""

    def __init__(self, fake_port: int | None, environment: dict[str, str], operator_variables: list[str]):
        self.fake_port = fake_port
        self.environment = environment
        self.operator_variables = operator_variables

    @property
    def fake_url(self) -> str:
        return f"http://{HOST}:{self.fake_port}"


def line_plan(port: int, environ=None) -> LinePlan:
    """The fake LINE unless the operator set a LINE channel in the environment."""
    environ = os.environ if environ is None else environ
    chosen = operator_line_variables(environ)
    if chosen:
        return LinePlan(None, {}, chosen)
    line_port = _line_port(port, environ)
    return LinePlan(line_port, fake_line_environment(line_port, ensure_demo_line_channel(), HOST), [])


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if the demo process dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:  # noqa: S110 - best effort; not available off Linux  # nosec B110
        pass


class Command(BaseCommand):
    help = "Run the local demo: migrate, demo data, demo login, fake LINE, task cluster and web server."

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

    def _banner(self, login, port: int, line: LinePlan | None = None) -> None:
        base = f"http://{HOST}:{port}"
        lines = [
            "",
            "=" * 64,
            "LINE 市役所 demo",
            f"  Admin (staff):       {base}/admin/",
            f"  Procedure simulator: {base}/procedures/simulator/",
            f"  Resident simulator:  {base}/line/simulator/  (a resident of the LINE account)",
            f"  Login:               {login.username} / {login.password}",
            f"  (password kept in {password_file()}; delete it to get a new one)",
        ]
        if line is not None and line.fake_port is not None:
            lines.append(f"  LINE:                fake LINE API at {line.fake_url} (data: port {line.fake_port + 1})")
            lines.append(f"                       webhook {base}/line/webhook/")
        elif line is not None:
            lines.append(f"  LINE:                the channel from the environment ({', '.join(line.operator_variables)})")
        lines += ["  Stop with Ctrl-C.", "=" * 64, ""]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
        self.stdout.flush()

    # ------------------------------------------------------------------
    # The two child processes.
    # ------------------------------------------------------------------

    def _spawn(self, name: str, arguments: list[str], environment: dict[str, str] | None = None) -> _Child:
        manage = Path(settings.BASE_DIR) / "manage.py"
        self.stdout.write(f"Starting the {name}: manage.py {' '.join(arguments)}")
        self.stdout.flush()
        # Own process group: a Ctrl-C in the terminal reaches only this process,
        # which forwards it once to each child.
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own manage.py  # nosec B603
            [sys.executable, str(manage), *arguments],
            cwd=settings.BASE_DIR,
            env={**os.environ, **(environment or {})},
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
        try:
            line = line_plan(port)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if line.fake_port is None:
            self.stdout.write(
                f"LINE: using the LINE channel set in the environment ({', '.join(line.operator_variables)}); "
                "the fake LINE is not started, so the resident simulator (/line/simulator/) is not available."
            )
        else:
            busy = [p for p in (line.fake_port, line.fake_port + 1) if _port_in_use(p)]
            if busy:
                raise CommandError(
                    f"Port {busy[0]} on {HOST} for the fake LINE is already in use. Choose others with "
                    f"DEMO_LINE_PORT=<port> (it uses that port and the next), or set "
                    f"{' / '.join(OPERATOR_LINE_VARIABLES[:2])} to use a real LINE channel."
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
            if line.fake_port is not None:
                # First, so the cluster's first call to LINE finds it listening.
                children.append(
                    self._spawn("fake LINE", ["fakeline", "--port", str(line.fake_port)], line.environment)
                )
                self._wait_for_ports(children, [line.fake_port, line.fake_port + 1], stopping)
                # A fresh fake LINE has no rich menus: the cluster deploys the city's menus to it.
                async_task("broadcasts.richmenu.tasks.rich_menus_deploy_all_task")
            if not stopping and not _exited(children):
                children.append(self._spawn("task cluster", ["qcluster"], line.environment))
            if not stopping and not _exited(children):
                children.append(
                    self._spawn("web server", ["runserver", "--noreload", f"{HOST}:{port}"], line.environment)
                )
            if self._wait_for_ports(children, [port], stopping):
                self._banner(login, port, line)
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

    @staticmethod
    def _wait_for_ports(children: list[_Child], ports: list[int], stopping: list[int]) -> bool:
        """Wait until every port answers (or a time-out); False when stopping or a child has exited."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not stopping:
            if _exited(children):
                return False
            if all(_port_in_use(p) for p in ports):
                break
            time.sleep(0.2)
        return not stopping

    @staticmethod
    def _wait_for_first_exit(children: list[_Child]) -> _Child:
        while True:
            for child in children:
                if child.process.poll() is not None:
                    return child
            time.sleep(0.2)

    def _stop_all(self, children: list[_Child]) -> None:
        for child in reversed(children):  # the fake LINE last
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


def _exited(children: list[_Child]) -> bool:
    return any(child.process.poll() is not None for child in children)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0
