"""Compressed HDF5 as beamlines write it (Blosc, bitshuffle/LZ4 via hdf5plugin), read lazily."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import napari_tomoml as tm

hdf5plugin = pytest.importorskip("hdf5plugin")


@pytest.mark.parametrize("name", ["blosc", "bitshuffle-lz4", "zstd"])
def test_compressed_dxchange_reads_lazily_and_exactly(tmp_path, name):
    filters = {"blosc": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
               "bitshuffle-lz4": hdf5plugin.Bitshuffle(cname="lz4"),
               "zstd": hdf5plugin.Zstd()}[name]
    rng = np.random.default_rng(0)  # counts as a detector gives them: smooth, with a little noise
    proj = (3000 + 500 * np.sin(np.arange(64) / 9) + rng.integers(0, 8, (30, 8, 64))).astype(np.uint16)
    path = tmp_path / f"{name}.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/exchange/data", data=proj, chunks=(1, 8, 64), **filters)
        f.create_dataset("/exchange/data_white", data=np.full((2, 8, 64), 4000, np.uint16), **filters)
        f.create_dataset("/exchange/data_dark", data=np.zeros((2, 8, 64), np.uint16))
        f.create_dataset("/exchange/theta", data=np.linspace(0, 180, 30, endpoint=False))
    with h5py.File(path, "r") as f:  # really compressed, with that filter
        assert f["/exchange/data"].id.get_storage_size() < proj.nbytes
    scan = tm.load_scan(path, lazy=True)
    assert scan.lazy
    np.testing.assert_array_equal(np.asarray(scan.projections[5:9]), proj[5:9])
    np.testing.assert_array_equal(np.asarray(scan.projections), proj)
    np.testing.assert_array_equal(np.asarray(scan.flats), 4000)
    np.testing.assert_array_equal(np.asarray(tm.read_volume(path, lazy=True)), proj)


def test_filters_register_without_importing_hdf5plugin_yourself(tmp_path):
    """A fresh process that only imports napari_tomoml reads a Blosc file (io.hdf5 registers the filters)."""
    import subprocess
    import sys

    path = tmp_path / "blosc.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/exchange/data", data=np.arange(4 * 8 * 16, dtype=np.float32).reshape(4, 8, 16),
                         **hdf5plugin.Blosc())
    code = f"import numpy as np, napari_tomoml as tm; print(float(np.asarray(tm.load_scan({str(path)!r}).projections).sum()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) == float(np.arange(4 * 8 * 16).sum())
