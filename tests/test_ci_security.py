"""CI's security steps: bandit and pip-audit run, and an unreachable vulnerability database is never a pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORT_SCRIPT = ROOT / ".ci" / "pip_audit_report.py"


def test_ci_runs_bandit_on_the_project_and_pip_audit_on_both_requirement_files():
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "-m bandit -c pyproject.toml -r ." in text
    assert "-m pip_audit -r requirements.txt -r requirements-dev.txt" in text
    assert ".ci/pip_audit_report.py" in text
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[tool.bandit]" in pyproject


def verdict(tmp_path, report: dict | None, *, status: int = 0, stderr: str = "") -> tuple[int, str]:
    report_file, stderr_file = tmp_path / "report.json", tmp_path / "stderr.txt"
    report_file.write_text("" if report is None else json.dumps(report), encoding="utf-8")
    stderr_file.write_text(stderr, encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(REPORT_SCRIPT), str(report_file), str(status), str(stderr_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_a_known_vulnerability_fails(tmp_path):
    report = {
        "dependencies": [
            {"name": "django", "version": "5.2.0", "vulns": [{"id": "PYSEC-2099-1", "fix_versions": ["5.2.1"]}]},
            {"name": "qrcode", "version": "8.2", "vulns": []},
        ]
    }
    status, output = verdict(tmp_path, report, status=1)
    assert status == 1 and "VULNERABLE: django 5.2.0: PYSEC-2099-1 (fixed in: 5.2.1)" in output


def test_every_package_checked_and_clean_passes(tmp_path):
    report = {"dependencies": [{"name": "django", "version": "5.2.19", "vulns": []}]}
    status, output = verdict(tmp_path, report)
    assert status == 0 and "1 pinned packages checked, no known vulnerabilities" in output


def test_packages_pip_audit_could_not_look_up_are_an_unreachable_database_not_a_pass(tmp_path):
    """What pip-audit does without internet: every package skipped, status 0, "No known vulnerabilities"."""
    reason = "Dependency not found on PyPI and could not be audited: django (5.2.19)"
    report = {"dependencies": [{"name": "django", "skip_reason": reason}, {"name": "qrcode", "version": "8.2", "vulns": []}]}
    status, output = verdict(tmp_path, report, status=0, stderr="No known vulnerabilities found")
    assert status == 3
    assert "vulnerability database unreachable" in output and "1 of 2" in output and "django" in output


def test_a_connection_error_is_an_unreachable_database(tmp_path):
    stderr = "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.osv.dev', port=443): Max retries exceeded"
    status, output = verdict(tmp_path, None, status=1, stderr=stderr)
    assert status == 3 and "vulnerability database unreachable" in output


@pytest.mark.parametrize("stderr", ["", "ERROR: requirements.txt: invalid requirement"])
def test_any_other_pip_audit_failure_fails(tmp_path, stderr):
    status, output = verdict(tmp_path, None, status=1, stderr=stderr)
    assert status == 1 and "pip-audit failed" in output
