"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The team's shared real scans (../shared/data); skips where they are absent, as on a user's machine."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA.resolve()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
