"""Test-wide settings: these must be in the environment before Django settings load."""

import os

os.environ.setdefault("GOVTECH_TESTING", "1")
os.environ.setdefault("Q_SYNC", "0")
