"""Fixtures shared by every test: the fake LINE API server (messaging/line/fakeline)."""

pytest_plugins = ["messaging.line.fakeline.pytest_plugin"]
