"""The copies of the references the suite falls back to are the references, byte for byte."""

import pytest

from snippets import COPIES, LOGINWA, SHARED, SPWP


@pytest.mark.parametrize("name", [LOGINWA, SPWP])
def test_the_kept_copy_is_the_reference(name):
    if not (SHARED / name).is_file():
        pytest.skip(f"the reference itself is not on this machine (looked in {SHARED})")
    assert (COPIES / name).read_bytes() == (SHARED / name).read_bytes(), f"update tests/clients/reference/{name}"
