# LINE 市役所 – developer entry points. Plain POSIX make; every recipe is sh.
#
#   make run    the local demo (SQLite + django-q2 ORM broker), http://127.0.0.1:8000/
#   make test   the whole test suite
#   make lint   ruff + import contracts
#   make check  Django system checks + no missing migrations
#
# The virtualenv lives in .venv and is (re)installed only when requirements.txt or
# requirements-dev.txt differs from the copy stored in .venv after the last
# successful install.

VENV = .venv
PY = $(VENV)/bin/python
STAMP = $(VENV)/.requirements.installed
# Extra pytest arguments, e.g. make test PYTEST_ARGS="-x -k health" or PYTEST_ARGS="-n 2".
PYTEST_ARGS =
# If set, `make test` writes pytest's exact exit status to this file (.ci/run uses it).
PYTEST_STATUS_FILE =

.PHONY: run test lint check venv

venv:
	@if [ ! -x "$(PY)" ] || ! "$(PY)" -c "import sys" >/dev/null 2>&1; then \
		if command -v python3.11 >/dev/null 2>&1; then base=python3.11; \
		elif command -v python3 >/dev/null 2>&1; then base=python3; \
		else echo "make: neither python3.11 nor python3 found on PATH" >&2; exit 1; fi; \
		echo "Creating $(VENV) with $$base ($$($$base --version 2>&1))"; \
		rm -rf "$(VENV)" && $$base -m venv "$(VENV)" || exit 1; \
		rm -f "$(STAMP)"; \
	fi; \
	"$(PY)" -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" || \
		echo "make: warning: $(VENV) is not Python 3.11 (pyproject.toml requires 3.11)" >&2; \
	if ! cat requirements.txt requirements-dev.txt | cmp -s - "$(STAMP)"; then \
		echo "Installing the pinned requirements into $(VENV)"; \
		"$(PY)" -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt || exit 1; \
		cat requirements.txt requirements-dev.txt > "$(STAMP)"; \
	fi

run: venv
	GOVTECH_DEMO=1 "$(PY)" manage.py run_demo

# make exits 2 on any failing recipe; the recipe itself exits with pytest's
# status and prints it, and PYTEST_STATUS_FILE keeps the exact number.
test: venv
	@"$(PY)" -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ -n "$(PYTEST_STATUS_FILE)" ]; then echo "$$status" > "$(PYTEST_STATUS_FILE)"; fi; \
	if [ "$$status" -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit 5); an empty run is treated as a failure." >&2; \
	elif [ "$$status" -ne 0 ]; then \
		echo "make test: pytest failed with exit status $$status." >&2; \
	fi; \
	exit $$status

lint: venv
	"$(PY)" -m ruff check .
	"$(VENV)/bin/lint-imports" --no-cache

check: venv
	GOVTECH_DEMO=1 "$(PY)" manage.py makemigrations --check --dry-run
	GOVTECH_DEMO=1 "$(PY)" manage.py check
