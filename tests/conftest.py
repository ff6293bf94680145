"""Fixtures shared by all test folders."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder named by ``SONOFM_DATA`` (e.g. ../shared/data); skips the test when it is unavailable."""
    value = os.environ.get("SONOFM_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("real data not available (set SONOFM_DATA to the shared data folder)")
    return Path(value)
