"""Writers: no silent overwrite, atomic replacement, chunk-by-chunk dask input."""

from __future__ import annotations

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from napari_tomoml.errors import InputError, OutputExistsError
from napari_tomoml.io import write_hdf5, write_tiff_stack, write_zarr

WRITERS = {
    "h5": write_hdf5,
    "tif": write_tiff_stack,
    "zarr": write_zarr,
}


def _read(path):
    if path.suffix == ".h5":
        with h5py.File(path) as f:
            return f["/exchange/data"][()]
    if path.suffix == ".tif":
        return tifffile.imread(path)
    return zarr.open_group(store=str(path), mode="r")["data"][...]


@pytest.mark.parametrize("ext", WRITERS)
def test_refuses_to_overwrite_then_replaces_when_asked(tmp_path, rng, ext, assert_unchanged):
    path = tmp_path / f"vol.{ext}"
    first, second = rng.random((2, 5, 4, 3)).astype(np.float32)
    WRITERS[ext](path, first)
    with assert_unchanged(path):
        with pytest.raises(OutputExistsError, match="overwrite=True") as info:
            WRITERS[ext](path, second)
    assert isinstance(info.value, FileExistsError) and path.name in str(info.value)
    WRITERS[ext](path, second, overwrite=True)
    np.testing.assert_array_equal(_read(path), second)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp or backup left over


def _failing_dask(shape, fail_at):
    def block(x, block_info=None):
        if block_info[0]["chunk-location"][0] == fail_at:
            raise RuntimeError("disk on fire")
        return x

    return da.ones(shape, chunks=(2,) + shape[1:], dtype=np.float32).map_blocks(block, dtype=np.float32)


@pytest.mark.parametrize("ext", WRITERS)
def test_crash_mid_write_leaves_existing_file_intact(tmp_path, ext, assert_unchanged):
    path = tmp_path / f"vol.{ext}"
    WRITERS[ext](path, np.zeros((6, 4, 3), np.float32))
    with assert_unchanged(path):
        with pytest.raises(RuntimeError, match="disk on fire"):
            WRITERS[ext](path, _failing_dask((6, 4, 3), fail_at=2), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("ext", WRITERS)
def test_dask_input_is_written_one_chunk_at_a_time(tmp_path, rng, ext):
    data = rng.random((10, 4, 3)).astype(np.float32)
    calls = []

    def record(x):
        calls.append(x.shape[0])
        return x

    lazy = da.from_array(data, chunks=(3, 4, 3)).map_blocks(record, dtype=np.float32)
    calls.clear()
    path = WRITERS[ext](tmp_path / f"vol.{ext}", lazy)
    np.testing.assert_array_equal(_read(path), data)
    assert sorted(calls) == [1, 3, 3, 3]  # every chunk computed once, never the whole volume


def test_tiff_stack_2d_and_metadata(tmp_path):
    path = write_tiff_stack(tmp_path / "slice.tif", np.eye(4, dtype=np.float32), metadata={"task": "fbp"})
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), np.eye(4))
        assert tif.shaped_metadata[0]["task"] == "fbp"


def test_large_volume_writes_bigtiff(tmp_path, monkeypatch):
    import napari_tomoml.io.writers as writers

    monkeypatch.setattr(writers, "BIGTIFF_BYTES", 100)
    path = write_tiff_stack(tmp_path / "big.tif", np.zeros((2, 8, 8), np.float32))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff


def test_last_axis_of_three_stays_grey_columns(tmp_path):
    vol = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    with tifffile.TiffFile(write_tiff_stack(tmp_path / "narrow.tif", vol)) as tif:
        assert len(tif.pages) == 2
        np.testing.assert_array_equal(tif.asarray(), vol)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda p: write_hdf5(p / "a.h5", np.zeros((3, 2, 2)), theta=[0, 1]), "2 angles"),
        (lambda p: write_zarr(p / "a.zarr", np.zeros((3, 2, 2)), theta=[0]), "1 angles"),
        (lambda p: write_tiff_stack(p / "a.tif", np.zeros((2, 2, 2, 2))), "2-D or 3-D"),
        (lambda p: write_hdf5(p / "a.h5", np.array(["a", "b"])), "numeric"),
        (lambda p: write_hdf5(p / "a.h5", np.zeros((2, 2, 2)), dataset="data"), "absolute"),
        (lambda p: write_tiff_stack(p / "a.tif", np.zeros((2, 2, 2)), metadata={"x": object()}), "JSON"),
    ],
)
def test_bad_writer_arguments(tmp_path, call, words):
    with pytest.raises(InputError, match=words):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []
