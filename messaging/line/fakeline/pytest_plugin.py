"""pytest fixtures for the fake LINE API server.

Register once in the root ``conftest.py``::

    pytest_plugins = ["messaging.line.fakeline.pytest_plugin"]

* ``fake_line_server`` (session): the running ``FakeLineServer`` (two ports: ``url`` = api.line.me,
  ``data_url`` = api-data.line.me), started once per session (per xdist worker).
* ``fake_line`` (function): the same server, reset for this test; points Django's ``LINE_API_BASE_URL`` and
  ``LINE_API_DATA_BASE_URL`` at it through pytest-django's ``settings`` fixture (restored afterwards) and
  FAILS the test at teardown if the fake received an invalid request, unless the test called
  ``fake_line.expect_invalid()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeLineServer


@pytest.fixture(scope="session")
def fake_line_server() -> Iterator[FakeLineServer]:
    server = FakeLineServer().start()
    try:
        yield server
    finally:
        server.stop()


def _django_settings(request: pytest.FixtureRequest):
    """pytest-django's ``settings`` fixture when pytest-django and configured Django settings exist."""
    try:
        from django.conf import settings as django_settings
    except ImportError:
        return None
    try:
        if not django_settings.configured:
            return None
        return request.getfixturevalue("settings")
    except pytest.FixtureLookupError:  # pytest-django is not installed
        return None


def invalid_request_report(server: FakeLineServer) -> str | None:
    """Text explaining the unexpected invalid requests the fake received, or None if there were none."""
    invalid = server.unexpected_invalid_calls()
    if not invalid:
        return None
    lines = [f"The fake LINE API received {len(invalid)} invalid request(s):"]
    lines += [f"  {call.describe()}" for call in invalid]
    lines.append("Fix the client, or call fake_line.expect_invalid() if the test sends them on purpose.")
    return "\n".join(lines)


def check_invalid_requests(server: FakeLineServer) -> None:
    """Fail the current test if the fake received invalid requests that were not expected."""
    report = invalid_request_report(server)
    if report:
        pytest.fail(report, pytrace=False)


@pytest.fixture
def fake_line(fake_line_server: FakeLineServer, request: pytest.FixtureRequest) -> Iterator[FakeLineServer]:
    fake_line_server.reset()
    settings = _django_settings(request)
    if settings is not None:
        settings.LINE_API_BASE_URL = fake_line_server.url
        settings.LINE_API_DATA_BASE_URL = fake_line_server.data_url
    yield fake_line_server
    check_invalid_requests(fake_line_server)
