"""Shared fixtures: the real data beside the checkout, and small generated rasters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (PROJECT_ROOT / ".." / "shared" / "data").resolve()
REQUIRE_SHARED = os.environ.get("LSMAP_REQUIRE_SHARED_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skipped in a user's clone, a failure in CI (LSMAP_REQUIRE_SHARED_DATA=1)."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    message = f"real test data not found at {SHARED_DATA} (clone the project beside ../shared to run these tests)"
    if REQUIRE_SHARED:
        pytest.fail(message + "; LSMAP_REQUIRE_SHARED_DATA is set, so this is a failure")
    pytest.skip(message)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT
