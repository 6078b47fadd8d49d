"""Lazy opening: dask arrays that read nothing until asked, and then only what is asked."""

from __future__ import annotations

import pickle

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import zarr

import napari_tomoml.io._common as common
from napari_tomoml.io import estimate_contrast_limits, load_scan, write_hdf5, write_zarr


@pytest.fixture
def h5_reads(monkeypatch):
    """Record (dataset name, index) of every h5py dataset read."""
    reads = []
    real = h5py.Dataset.__getitem__

    def spy(self, key, *args, **kwargs):
        reads.append((self.name, key))
        return real(self, key, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    return reads


def _data_reads(reads):
    return [key for name, key in reads if name == "/exchange/data"]


def test_hdf5_lazy_reads_nothing_then_only_the_row_asked_for(tmp_path, small_scan, h5_reads):
    path = write_hdf5(tmp_path / "scan.h5", small_scan)
    scan = load_scan(path, lazy=True)
    assert isinstance(scan.projections, da.Array) and scan.lazy
    assert _data_reads(h5_reads) == []
    assert "lazy" in scan.summary()

    sino = scan.projections[:, 2, :].compute()
    np.testing.assert_array_equal(sino, small_scan.projections[:, 2, :])
    # slices reach h5py, so a sinogram reads one row of each frame, not whole frames
    assert _data_reads(h5_reads) and all(key[1] == 2 for key in _data_reads(h5_reads))


def test_lazy_none_follows_the_size_threshold(tmp_path, small_scan, monkeypatch):
    path = write_hdf5(tmp_path / "scan.h5", small_scan)
    assert isinstance(load_scan(path).projections, np.ndarray)
    monkeypatch.setattr(common, "LAZY_THRESHOLD_BYTES", 100)
    assert isinstance(load_scan(path).projections, da.Array)
    assert isinstance(load_scan(path, lazy=False).projections, np.ndarray)


def test_contrast_limits_read_only_sampled_frames(tmp_path, rng, h5_reads):
    data = rng.random((40, 6, 8)).astype(np.float32)
    data[7] = 1e6  # an unsampled frame: a full scan would see it
    path = write_hdf5(tmp_path / "big.h5", data)
    scan = load_scan(path, lazy=True)
    lo, hi = estimate_contrast_limits(scan.projections, sample=4)
    assert 0 <= lo < hi <= 1
    frames_read = {k[0].start if isinstance(k[0], slice) else k[0] for k in _data_reads(h5_reads)}
    assert len(frames_read) <= 4


def test_nxtomo_lazy_with_interleaved_keys_matches_eager(tmp_path, small_scan):
    p = small_scan.projections
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["definition"] = "NXtomo"
        # a flat in the middle splits the projections into two runs
        entry["instrument/detector/data"] = np.concatenate([p[:5], small_scan.flats[:1], p[5:]])
        entry["instrument/detector/image_key"] = [0] * 5 + [1] + [0] * 7
    lazy = load_scan(path, lazy=True)
    assert isinstance(lazy.projections, da.Array)
    np.testing.assert_array_equal(lazy.projections.compute(), p)
    np.testing.assert_array_equal(lazy.projections[[9, 2, 2], 1:3, ::-2].compute(), p[[9, 2, 2], 1:3, ::-2])
    np.testing.assert_array_equal(load_scan(path, lazy=False).projections, p)


def test_zarr_lazy_reads_no_chunk_on_open(tmp_path, small_scan, monkeypatch):
    path = write_zarr(tmp_path / "scan.zarr", small_scan)
    reads = []
    real = zarr.Array.__getitem__
    monkeypatch.setattr(
        zarr.Array, "__getitem__", lambda self, key: reads.append(self.path) or real(self, key)
    )
    scan = load_scan(path, lazy=True)
    assert isinstance(scan.projections, da.Array) and "data" not in reads
    np.testing.assert_array_equal(scan.projections[3].compute(), small_scan.projections[3])


def test_tiff_folder_and_stack_lazy(tmp_path, small_scan, monkeypatch):
    folder = tmp_path / "tiffs"
    folder.mkdir()
    for i, frame in enumerate(small_scan.projections):
        tifffile.imwrite(folder / f"proj_{i:03d}.tif", frame)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, small_scan.projections)
    reads = []
    real = tifffile.imread
    monkeypatch.setattr(tifffile, "imread", lambda path, **kw: reads.append(path) or real(path, **kw))

    scan = load_scan(folder, lazy=True)
    assert isinstance(scan.projections, da.Array) and reads == []
    np.testing.assert_array_equal(scan.projections[4].compute(), small_scan.projections[4])
    assert [p.name for p in reads] == ["proj_004.tif"]

    scan = load_scan(stack, lazy=True)
    assert isinstance(scan.projections, da.Array)
    np.testing.assert_array_equal(scan.projections[2:9:3, 1].compute(), small_scan.projections[2:9:3, 1])


def test_lazy_arrays_survive_pickling(tmp_path, small_scan):
    """dask's process and distributed schedulers pickle the graph: sources must reopen files."""
    path = write_hdf5(tmp_path / "scan.h5", small_scan)
    scan = load_scan(path, lazy=True)
    scan.projections[0].compute()  # opens the file
    again = pickle.loads(pickle.dumps(scan.projections))
    np.testing.assert_array_equal(again[5].compute(), small_scan.projections[5])
