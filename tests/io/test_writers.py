"""Writers: no silent overwrite, atomic replacement, chunk-by-chunk dask input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from napari_tomoml.errors import InputError, OutputError, OutputExistsError, ResultError
from napari_tomoml.io import write_hdf5, write_tiff_stack, write_zarr
from napari_tomoml.io.writers import check_output, clean_leftovers, write_volume

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


# ---------------------------------------------------------------------------- the one atomic-output rule
VOLUME_EXTS = [".npy", ".tif", ".h5", ".zarr"]


def _read_any(path):
    return np.load(path) if path.suffix == ".npy" else _read(path)


@pytest.mark.parametrize("ext", VOLUME_EXTS)
def test_write_volume_round_trip_refusal_and_metadata(tmp_path, rng, ext):
    path = tmp_path / f"vol{ext}"
    data = rng.random((5, 4, 3)).astype(np.float32)
    write_volume(path, da.from_array(data, chunks=(2, 4, 3)), metadata={"task": "test"})
    np.testing.assert_array_equal(_read_any(path), data)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_volume(path, data)
    write_volume(path, 2 * data, overwrite=True)
    np.testing.assert_array_equal(_read_any(path), 2 * data)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("ext", VOLUME_EXTS)
def test_all_nan_result_is_an_error_and_the_old_output_stays(tmp_path, ext, assert_unchanged):
    path = tmp_path / f"vol{ext}"
    write_volume(path, np.ones((3, 4, 4), np.float32))
    with assert_unchanged(path):
        with pytest.raises(ResultError, match="entirely NaN/inf"):
            write_volume(path, np.full((3, 4, 4), np.nan, np.float32), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_some_nan_values_are_written_with_a_warning(tmp_path):
    data = np.ones((2, 3, 3), np.float32)
    data[0, 0, 0] = np.nan
    with pytest.warns(UserWarning, match="1 of 18 values are NaN/inf"):
        write_volume(tmp_path / "v.npy", data)


def test_output_that_is_the_input_is_refused_even_with_overwrite(tmp_path, assert_unchanged):
    path = tmp_path / "vol.npy"
    np.save(path, np.ones((2, 3, 3), np.float32))
    with assert_unchanged(path):
        with pytest.raises(OutputError, match="is the input"):
            write_volume(tmp_path / "." / "vol.npy", np.zeros((2, 3, 3), np.float32), overwrite=True, inputs=[path])


def test_missing_output_folders_are_created(tmp_path):
    path = write_volume(tmp_path / "new" / "deeper" / "vol.npy", np.ones((2, 3, 3), np.float32))
    assert np.load(path).shape == (2, 3, 3)


def test_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    import napari_tomoml.io.writers as writers

    real_access = os.access
    monkeypatch.setattr(writers.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(OutputError, match="not writable"):
        check_output(tmp_path / "sub" / "vol.npy")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        (tmp_path / "file").write_text("x")
        check_output(tmp_path / "file" / "vol.npy")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_for_real(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_volume(folder / "vol.npy", np.ones((2, 3, 3), np.float32))
    finally:
        folder.chmod(0o755)


def test_leftovers_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path):
    path = tmp_path / "vol.npy"
    dead_file = tmp_path / ".vol.npy.tmp-999999999-abcd1234"
    dead_dir = tmp_path / ".vol.npy.tmp-999999998-abcd1234"
    old_style = tmp_path / ".vol.npy.tmp-abcd1234"
    live = tmp_path / f".vol.npy.tmp-{os.getpid()}-abcd1234"
    other = tmp_path / ".other.npy.tmp-999999999-abcd1234"
    for p in (dead_file, old_style, live, other):
        p.write_bytes(b"half")
    dead_dir.mkdir()
    write_volume(path, np.ones((2, 3, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name, other.name])


def test_a_folder_output_moved_aside_by_a_killed_write_is_restored(tmp_path):
    path = tmp_path / "vol.zarr"
    write_volume(path, np.ones((2, 3, 3), np.float32))
    aside = tmp_path / ".vol.zarr.old-999999999-abcd1234"
    os.replace(path, aside)  # killed between "move the old folder aside" and "rename the new one in"
    assert clean_leftovers(path) == [aside]
    np.testing.assert_array_equal(_read(path), np.ones((2, 3, 3)))
    with pytest.raises(OutputExistsError):
        write_volume(path, np.zeros((2, 3, 3), np.float32))


KILL_SCRIPT = """
import sys, time
import dask.array as da, numpy as np
from napari_tomoml.io.writers import write_volume

def block(x, block_info=None):
    if block_info[0]["chunk-location"][0] == 2:
        print("mid-write", flush=True)
        time.sleep(60)
    return x

vol = da.zeros((8, 64, 64), chunks=(2, 64, 64), dtype=np.float32).map_blocks(block, dtype=np.float32)
write_volume(sys.argv[1], vol, overwrite=True)
"""


@pytest.mark.parametrize("ext", VOLUME_EXTS)
def test_kill_9_during_a_write_leaves_the_old_output_intact(tmp_path, ext, assert_unchanged):
    """Regression: a killed .npy write truncated the previous result (np.save onto the final name)."""
    path = tmp_path / f"vol{ext}"
    write_volume(path, np.full((8, 64, 64), 7, np.float32))
    with assert_unchanged(path):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "mid-write"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    np.testing.assert_array_equal(_read_any(path), 7)
    assert len(list(tmp_path.iterdir())) == 2  # the old output and the dead run's temporary
    write_volume(path, np.ones((8, 64, 64), np.float32), overwrite=True)  # the next run cleans up
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
