"""The published PtychoNN dataset layout: diffraction .npz arr_0 (lines, points, H, W) + complex labels .npy."""

from __future__ import annotations

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError, ScanReadError


@pytest.fixture
def published(tmp_path, rng):
    diff = rng.poisson(5.0, size=(3, 4, 16, 16)).astype(np.float32)
    labels = (rng.uniform(0.5, 1, (3, 4, 8, 8)) * np.exp(1j * rng.uniform(-1, 1, (3, 4, 8, 8)))).astype(np.complex64)
    np.savez_compressed(tmp_path / "scan_diff.npz", diff)  # saved unnamed: key arr_0, as published
    np.save(tmp_path / "scan_amp_pha.npy", labels)
    return tmp_path, diff, labels


def test_reads_the_published_layout(published):
    folder, diff, labels = published
    ds = tm.ptycho.load_dataset(folder / "scan_diff.npz", folder / "scan_amp_pha.npy")
    assert ds.grid == (3, 4) and len(ds) == 12
    np.testing.assert_array_equal(ds.patterns, diff.reshape(12, 16, 16))
    np.testing.assert_allclose(ds.amplitude * np.exp(1j * ds.phase), labels.reshape(12, 8, 8), atol=1e-6)
    # scan order: line by line
    np.testing.assert_array_equal(ds.patterns[5], diff[1, 1])


def test_diffraction_without_labels(published):
    folder, diff, _ = published
    ds = tm.ptycho.load_dataset(folder / "scan_diff.npz")
    assert ds.amplitude is None and ds.phase is None and ds.patterns.dtype == np.float32


def test_bad_dataset_files(published, tmp_path):
    folder, diff, labels = published
    np.save(tmp_path / "real.npy", np.abs(labels))
    with pytest.raises(InputError, match="complex"):
        tm.ptycho.load_dataset(folder / "scan_diff.npz", tmp_path / "real.npy")
    np.save(tmp_path / "short.npy", labels[:2])
    with pytest.raises(InputError, match="positions"):
        tm.ptycho.load_dataset(folder / "scan_diff.npz", tmp_path / "short.npy")
    np.savez(tmp_path / "named.npz", data=diff)
    with pytest.raises(ScanReadError, match="arr_0"):
        tm.ptycho.load_dataset(tmp_path / "named.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ScanReadError, match="readable"):
        tm.ptycho.load_dataset(tmp_path / "junk.npz")
    with pytest.raises(ScanReadError, match="does not exist"):
        tm.ptycho.load_dataset(tmp_path / "missing.npz")
