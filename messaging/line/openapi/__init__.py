"""LINE's official OpenAPI specs, vendored verbatim so the repository is self-contained.

The YAML files, ``LICENSE`` (Apache-2.0), ``SOURCE.txt`` (upstream commit) and ``README.md`` are
byte-identical copies of the shared ``line-openapi`` folder that sits next to the project root;
``messaging/tests/test_openapi_vendored.py`` checks that whenever that folder exists.
Do not edit them: re-copy to update. ``liff.yml`` (listed in README/SOURCE) is not vendored.
"""

from pathlib import Path

SPEC_FILES = ("messaging-api.yml", "webhook.yml", "insight.yml", "manage-audience.yml")
VENDORED_FILES = (*SPEC_FILES, "LICENSE", "SOURCE.txt", "README.md")


def spec_dir() -> Path:
    """Directory holding the vendored LINE OpenAPI files."""
    return Path(__file__).parent


def spec_path(name: str) -> Path:
    """Path of one vendored spec, e.g. ``spec_path("messaging-api.yml")``."""
    if name not in VENDORED_FILES:
        raise ValueError(f"{name!r} is not a vendored LINE OpenAPI file (one of {VENDORED_FILES})")
    return spec_dir() / name
