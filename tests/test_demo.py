"""The local demo: its staff login (ensure_demo_staff) and the run_demo command."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError

from govtech.demo import (
    DEMO_USERNAME,
    ensure_demo_line_channel,
    ensure_demo_staff,
    line_channel_file,
    password_file,
)
from govtech.management.commands import run_demo

ROOT = Path(__file__).resolve().parent.parent
User = get_user_model()


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def demo_settings(settings, tmp_path):
    settings.DEMO_MODE = True
    settings.VAR_DIR = tmp_path / "var"
    settings.STATIC_ROOT = tmp_path / "var" / "static"
    return settings


@pytest.mark.django_db
def test_creates_the_demo_superuser_once(demo_settings):
    login = ensure_demo_staff()
    assert login.created
    assert login.username == DEMO_USERNAME == "demo"
    user = User.objects.get(username="demo")
    assert user.is_staff and user.is_superuser and user.is_active
    assert user.check_password(login.password)
    assert len(login.password) >= 12
    stored = password_file()
    assert stored.parent == demo_settings.VAR_DIR
    assert stored.read_text().strip() == login.password
    assert stored.stat().st_mode & 0o077 == 0


@pytest.mark.django_db
def test_keeps_the_password_on_re_run(demo_settings):
    first = ensure_demo_staff()
    second = ensure_demo_staff()
    assert not second.created
    assert second.password == first.password
    assert User.objects.filter(username="demo").count() == 1
    assert User.objects.get(username="demo").check_password(first.password)


@pytest.mark.django_db
def test_restores_the_printed_login_if_it_was_changed(demo_settings):
    login = ensure_demo_staff()
    user = User.objects.get(username="demo")
    user.set_password("something-else-entirely")
    user.is_staff = False
    user.save()
    again = ensure_demo_staff()
    assert again.password == login.password
    user.refresh_from_db()
    assert user.is_staff and user.check_password(login.password)


@pytest.mark.django_db
def test_a_lost_password_file_gives_a_new_working_password(demo_settings):
    first = ensure_demo_staff()
    password_file().unlink()
    second = ensure_demo_staff()
    assert second.password != first.password
    assert User.objects.get(username="demo").check_password(second.password)


@pytest.mark.django_db
def test_refuses_outside_demo_mode(settings, tmp_path):
    settings.DEMO_MODE = False
    settings.VAR_DIR = tmp_path / "var"
    with pytest.raises(ImproperlyConfigured, match="GOVTECH_DEMO"):
        ensure_demo_staff()
    assert not User.objects.filter(username="demo").exists()
    assert not password_file().exists()


# --------------------------------------------------------------------------
# The run_demo command.
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_run_demo_refuses_outside_demo_mode(settings):
    settings.DEMO_MODE = False
    with pytest.raises(CommandError, match="GOVTECH_DEMO=1"):
        call_command("run_demo", "--no-serve")


@pytest.mark.parametrize("load_demo_exists", [True, False])
@pytest.mark.django_db
def test_run_demo_migrates_loads_demo_data_when_available_and_prints_the_login(
    demo_settings, monkeypatch, capsys, load_demo_exists
):
    called = []
    commands = {"migrate": "django.core", "run_demo": "govtech"}
    if load_demo_exists:
        commands["load_demo"] = "procedures"
    monkeypatch.setattr(run_demo, "get_commands", lambda: commands)
    monkeypatch.setattr(run_demo, "call_command", lambda name, *a, **k: called.append(name))
    call_command("run_demo", "--no-serve")
    assert called == (["migrate", "load_demo"] if load_demo_exists else ["migrate"])
    out = capsys.readouterr().out
    password = password_file().read_text().strip()
    assert f"demo / {password}" in out
    assert "http://127.0.0.1:8000/admin/" in out
    assert "http://127.0.0.1:8000/procedures/simulator/" in out
    assert "http://127.0.0.1:8000/line/simulator/" in out
    if not load_demo_exists:
        assert "skipping" in out


def test_run_demo_rejects_a_bad_port(monkeypatch):
    monkeypatch.setenv("DEMO_PORT", "eighty")
    with pytest.raises(CommandError, match="DEMO_PORT"):
        run_demo._port()
    monkeypatch.setenv("DEMO_PORT", "70000")
    with pytest.raises(CommandError, match="DEMO_PORT"):
        run_demo._port()


# --------------------------------------------------------------------------
# The demo's LINE: the fake LINE API unless the operator set a LINE channel.
# --------------------------------------------------------------------------


def test_the_demo_uses_the_fake_line_with_credentials_kept_in_var(demo_settings, monkeypatch):
    monkeypatch.delenv("DEMO_LINE_PORT", raising=False)
    plan = run_demo.line_plan(8000, environ={})
    assert plan.fake_port == 8011 and plan.fake_url == "http://127.0.0.1:8011"
    channel = ensure_demo_line_channel()
    assert plan.environment == {
        "LINE_API_BASE_URL": "http://127.0.0.1:8011",
        "LINE_API_DATA_BASE_URL": "http://127.0.0.1:8012",
        "LINE_CHANNEL_SECRET": channel.channel_secret,
        "LINE_CHANNEL_ACCESS_TOKEN": channel.access_token,
    }
    assert len(channel.channel_secret) == 32 and len(channel.access_token) >= 40
    stored = line_channel_file()
    assert stored.parent == demo_settings.VAR_DIR
    assert stored.stat().st_mode & 0o077 == 0
    # Kept: the next start signs with the same secret.
    assert run_demo.line_plan(8000, environ={}).environment == plan.environment
    # A damaged file gives new ones.
    stored.write_text("not json")
    assert ensure_demo_line_channel() != channel


def test_the_demo_leaves_an_operators_line_channel_alone(demo_settings):
    environ = {"LINE_CHANNEL_SECRET": "real-secret", "LINE_CHANNEL_ACCESS_TOKEN": "real-token", "LINE_API_BASE_URL": ""}
    plan = run_demo.line_plan(8000, environ=environ)
    assert plan.fake_port is None and plan.environment == {}
    assert plan.operator_variables == ["LINE_CHANNEL_SECRET", "LINE_CHANNEL_ACCESS_TOKEN"]
    assert not line_channel_file().exists()


def test_demo_line_port(monkeypatch, demo_settings):
    assert run_demo.line_plan(8000, environ={"DEMO_LINE_PORT": "9100"}).fake_port == 9100
    for bad in ("nine", "65535", "0", "7999", "8000"):
        monkeypatch.setenv("DEMO_LINE_PORT", bad)
        with pytest.raises(CommandError, match="DEMO_LINE_PORT"):
            run_demo._line_port(8000)
    monkeypatch.delenv("DEMO_LINE_PORT")
    with pytest.raises(CommandError, match="DEMO_LINE_PORT"):
        run_demo._line_port(65530)


def test_demo_line_channel_refuses_outside_demo_mode(settings, tmp_path):
    settings.DEMO_MODE = False
    settings.VAR_DIR = tmp_path / "var"
    with pytest.raises(ImproperlyConfigured, match="GOVTECH_DEMO"):
        ensure_demo_line_channel()
    assert not line_channel_file().exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_port_pair() -> int:
    """A port whose next port is free too (the fake LINE's API and data ports)."""
    for _attempt in range(50):
        port = _free_port()
        if port < 65535:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports")


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, command line) of every live process (Linux /proc; zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            found.append((int(entry.name), int(fields[1]), int(fields[2]), cmdline))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_run_demo_serves_admin_runs_the_task_cluster_and_stops_on_sigterm(tmp_path):
    """End to end, as `make run` does it, on a throw-away SQLite database."""
    port = _free_port()
    line_port = _free_port_pair()
    prefixes = ("DJANGO_", "GOVTECH_", "DATABASE_", "REDIS_", "LINE_", "Q_", "DEMO_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.update(
        GOVTECH_DEMO="1", GOVTECH_VAR_DIR=str(tmp_path / "var"), DEMO_PORT=str(port), DEMO_LINE_PORT=str(line_port)
    )
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
            [sys.executable, "manage.py", "run_demo"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5) as response:  # noqa: S310
                    status = response.status
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200, log.read_text()
        # The banner follows the runner's own readiness poll, a moment after the port answers.
        while time.monotonic() < deadline and "Stop with Ctrl-C." not in log.read_text():
            time.sleep(0.2)
        children = {pid: cmdline for pid, ppid, _, cmdline in _processes() if ppid == process.pid}
        assert any("qcluster" in cmdline for cmdline in children.values()), children
        assert any("runserver" in cmdline for cmdline in children.values()), children
        assert any(f"fakeline --port {line_port}" in cmdline for cmdline in children.values()), children
        # The fake LINE answers, and the web server and the cluster are pointed at it.
        with urllib.request.urlopen(f"http://127.0.0.1:{line_port}/_fake/health", timeout=5) as response:  # noqa: S310
            assert json.load(response)["status"] == "ok"
        for pid, cmdline in children.items():
            if "runserver" in cmdline or "qcluster" in cmdline:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                assert f"LINE_API_BASE_URL=http://127.0.0.1:{line_port}".encode() in environ
                assert f"LINE_API_DATA_BASE_URL=http://127.0.0.1:{line_port + 1}".encode() in environ
                assert any(item.startswith(b"LINE_CHANNEL_SECRET=") and len(item) > 30 for item in environ)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
        # Both children and whatever they started (the task workers) are gone.
        left = [p for p in _processes() if p[0] in children or p[2] in children]
        assert not left, left
        password = (tmp_path / "var" / "demo_password").read_text().strip()
        output = log.read_text()
        assert f"demo / {password}" in output
        assert f"http://127.0.0.1:{port}/line/simulator/" in output
        assert f"fake LINE API at http://127.0.0.1:{line_port}" in output
        assert "Demo stopped." in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
