"""The developer and CI entry points: Makefile targets, .ci/run, import contracts."""

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_test(tmp_path, pytest_args: str) -> tuple[subprocess.CompletedProcess, str]:
    status_file = tmp_path / "pytest-status"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "MAKE"))}
    result = subprocess.run(  # noqa: S603
        ["make", "--no-print-directory", "test", f"PYTEST_ARGS={pytest_args}", f"PYTEST_STATUS_FILE={status_file}"],  # noqa: S607
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result, status_file.read_text().strip() if status_file.exists() else ""


def test_makefile_has_the_documented_targets():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "test", "lint", "check", "venv"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert "GOVTECH_DEMO=1" in makefile and "run_demo" in makefile


@needs_make
def test_make_test_passes_through_a_passing_run(tmp_path):
    result, status = make_test(tmp_path, "-q -p no:cacheprovider tests/test_deployment.py -k dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert status == "0"


@needs_make
def test_make_test_fails_when_pytest_collects_nothing(tmp_path):
    result, status = make_test(tmp_path, "-q -p no:cacheprovider tests/test_deployment.py -k no_such_test_anywhere")
    assert result.returncode != 0
    assert status == "5"
    assert "collected no tests" in result.stderr


def test_ci_script_is_strict_and_executable():
    script = ROOT / ".ci" / "run"
    text = script.read_text(encoding="utf-8")
    assert os.access(script, os.X_OK)
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    for command in ("make test", "ruff check .", "lint-imports", "makemigrations --check --dry-run", "check --deploy"):
        assert command in text, command
    assert '"$pytest_status" = "5"' in text


def test_import_contracts_cover_the_pure_engine():
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter", encoding="utf-8")
    contracts = [config[section] for section in config.sections() if section.startswith("importlinter:contract:")]
    pure = next(c for c in contracts if "procedures.engine" in c["source_modules"].split())
    assert "procedures.spec" in pure["source_modules"].split()
    assert set(pure["forbidden_modules"].split()) >= {
        "django",
        "linebot",
        "requests",
        "urllib3",
        "messaging",
        "residents",
        "broadcasts",
    }
    assert any(
        c["source_modules"].split() == ["procedures"] and "messaging" in c["forbidden_modules"].split()
        for c in contracts
    )


def test_no_product_module_may_import_the_fake_line():
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter", encoding="utf-8")
    contract = config["importlinter:contract:fake-line-only-for-tests"]
    assert contract["forbidden_modules"].split() == ["messaging.line.fakeline"]
    sources = set(contract["source_modules"].split())
    assert set(config["importlinter"]["root_packages"].split()) - {"messaging"} <= sources
    # Allowed to import it: the fake itself, its command, tests; the packages holding them are only __init__ files.
    allowed = ("messaging.line.fakeline", "messaging.management.commands.fakeline", "messaging.tests")
    containers = {"messaging", "messaging.line", "messaging.management", "messaging.management.commands"}
    for path in (ROOT / "messaging").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module in containers or module.startswith(allowed):
            continue
        assert any(module == source or module.startswith(source + ".") for source in sources), module
    assert all(line.startswith("*.tests.") for line in contract["ignore_imports"].split("\n") if line)
