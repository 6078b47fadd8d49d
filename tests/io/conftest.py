"""Small synthetic scans and helpers for the io tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from napari_tomoml.io import Scan


@pytest.fixture
def small_scan(rng: np.random.Generator) -> Scan:
    """12 projections of 6 x 8 px (uint16 counts), 2 flats, 2 darks, 0..165° in 15° steps."""
    proj = rng.integers(100, 1000, size=(12, 6, 8)).astype(np.uint16)
    flats = rng.integers(1000, 1100, size=(2, 6, 8)).astype(np.uint16)
    darks = rng.integers(0, 50, size=(2, 6, 8)).astype(np.uint16)
    theta = np.radians(np.arange(12) * 15.0)
    return Scan(proj, theta, flats, darks, {"center": 3.5})


def _snapshot(path: Path) -> dict[str, tuple[str, int]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), os.stat(p).st_mtime_ns) for p in files}


@contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """Assert that the file or folder at ``path`` has the same bytes and mtimes afterwards."""
    before = _snapshot(path)
    yield
    assert _snapshot(path) == before, f"{path} was modified"


@pytest.fixture
def assert_unchanged():
    return unchanged
