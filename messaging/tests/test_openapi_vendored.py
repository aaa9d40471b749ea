"""The vendored LINE OpenAPI files must stay byte-identical to the shared read-only copy."""

from pathlib import Path

import pytest

from messaging.line.openapi import SPEC_FILES, VENDORED_FILES, spec_dir, spec_path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = PROJECT_ROOT.parent / "shared" / "line-openapi"


def test_every_vendored_file_is_present_in_the_package():
    assert spec_dir() == Path(spec_path("webhook.yml")).parent
    for name in VENDORED_FILES:
        assert spec_path(name).is_file(), name
    assert set(SPEC_FILES) <= set(VENDORED_FILES)


def test_unknown_file_name_is_refused():
    with pytest.raises(ValueError):
        spec_path("liff.yml")


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="shared line-openapi folder not present (standalone clone)")
@pytest.mark.parametrize("name", VENDORED_FILES)
def test_vendored_file_is_byte_identical_to_the_shared_copy(name):
    assert spec_path(name).read_bytes() == (SHARED_DIR / name).read_bytes(), (
        f"{name} differs from the shared line-openapi copy: re-copy it, do not edit it"
    )
