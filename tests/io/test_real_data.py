"""The team's real scans (../shared/data): skipped where the folder is absent."""

from __future__ import annotations

import dask.array as da
import numpy as np

from napari_tomoml.io import load_scan
from napari_tomoml.prep import normalize


def test_tooth_dxchange(shared_data, assert_unchanged):
    path = shared_data / "real" / "tooth.h5"
    with assert_unchanged(path):
        scan = load_scan(path)
        lazy = load_scan(path, lazy=True)
    assert scan.shape == (181, 2, 640) and scan.projections.dtype == np.float32
    assert scan.flats.shape == (10, 2, 640) and scan.darks.shape == (10, 2, 640)
    np.testing.assert_allclose(scan.theta[[0, -1]], np.radians([0.0, 179.0055]), atol=1e-4)
    assert np.all(np.diff(scan.theta) > 0)
    line = normalize(scan)
    assert line.dtype == np.float32 and line.shape == (181, 2, 640) and np.isfinite(line).all()
    assert 0.5 < line.max() < 5 and abs(np.median(line[:, :, :20])) < 0.1  # air at the edge ~ 0
    assert isinstance(lazy.projections, da.Array)
    np.testing.assert_array_equal(normalize(lazy), line)


def test_savu_tiff_folder(shared_data, assert_unchanged):
    folder = shared_data / "real" / "savu_i13_24737_tiff"
    with assert_unchanged(folder):
        scan = load_scan(folder)
    assert scan.shape == (91, 135, 160) and scan.projections.dtype == np.uint16
    assert scan.flats.shape == (1, 135, 160) and scan.darks.shape == (1, 135, 160)
    deg = np.degrees(scan.theta.astype(np.float64))
    # angles.txt pads -88.2 and 91.8 with repeats; collapsed, 91 angles in 2° steps remain
    np.testing.assert_allclose(deg[[0, -1]], [-88.2, 91.8], atol=1e-3)
    np.testing.assert_allclose(np.diff(deg), 2.0, atol=1e-3)
    assert any("collapsed" in note for note in scan.metadata["notes"])
    line = normalize(scan)
    assert line.dtype == np.float32 and np.isfinite(line).all() and line.max() < 10
