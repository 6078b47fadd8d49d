"""Every bad input raises a TomomlError that names the file, and leaves the input untouched."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from napari_tomoml.errors import InputError, ScanReadError, TomomlError
from napari_tomoml.io import load_scan, write_hdf5


def _fails(path, error, words, assert_unchanged):
    """load_scan(path) raises ``error`` matching ``words``, names ``path``, hides library tracebacks."""
    with assert_unchanged(path):
        with pytest.raises(error, match=words) as info:
            load_scan(path)
    assert isinstance(info.value, TomomlError)
    assert path.name in str(info.value)
    # user errors are reported, not shown as a chained traceback from inside h5py/tifffile
    exc = info.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    assert "napari_tomoml" in str(info.traceback[-1].path)
    return info.value


def test_missing_path(tmp_path):
    with pytest.raises(ScanReadError, match="no such file") as info:
        load_scan(tmp_path / "nope.h5")
    assert "nope.h5" in str(info.value)


def test_unknown_format(tmp_path, assert_unchanged):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    _fails(path, ScanReadError, "unknown scan format '.txt'", assert_unchanged)


def test_empty_folder_and_folder_without_tiffs(tmp_path, assert_unchanged):
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(empty, ScanReadError, "no TIFF files", assert_unchanged)
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.md").write_text("x")
    _fails(other, ScanReadError, "no TIFF files", assert_unchanged)


def test_folder_with_only_flats_and_darks(tmp_path, assert_unchanged):
    folder = tmp_path / "refs"
    folder.mkdir()
    tifffile.imwrite(folder / "flat_0.tif", np.ones((4, 4), np.uint16))
    tifffile.imwrite(folder / "dark_0.tif", np.ones((4, 4), np.uint16))
    _fails(folder, ScanReadError, "no projections", assert_unchanged)


def test_corrupt_and_truncated_hdf5(tmp_path, small_scan, assert_unchanged):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not hdf5" * 100)
    _fails(garbage, ScanReadError, "not a readable HDF5", assert_unchanged)

    good = write_hdf5(tmp_path / "good.h5", small_scan)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _fails(truncated, ScanReadError, "corrupt or truncated", assert_unchanged)


def test_corrupt_tiff_stack_and_truncated_tiff_in_folder(tmp_path, small_scan, assert_unchanged):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\xff" * 64)
    _fails(bad, ScanReadError, "not a readable TIFF", assert_unchanged)

    folder = tmp_path / "folder"
    folder.mkdir()
    for i, frame in enumerate(small_scan.projections[:3]):
        tifffile.imwrite(folder / f"proj_{i}.tif", frame)
    data = (folder / "proj_2.tif").read_bytes()
    (folder / "proj_2.tif").write_bytes(data[: len(data) // 3])
    err = _fails(folder, ScanReadError, "corrupt or truncated", assert_unchanged)
    assert "proj_2.tif" in str(err)


def test_hdf5_without_projections_dataset(tmp_path, assert_unchanged):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["/images/stack"] = np.zeros((2, 3, 4))
    err = _fails(path, ScanReadError, "/exchange/data", assert_unchanged)
    assert "/images/stack" in str(err)  # points the user at what the file does hold


def test_dxchange_angle_count_mismatch(tmp_path, small_scan, assert_unchanged):
    path = tmp_path / "mismatch.h5"
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = small_scan.projections
        f["/exchange/theta"] = np.arange(10.0)
    _fails(path, InputError, "10 angles but /exchange/data has 12", assert_unchanged)


def test_nxtomo_angle_count_mismatch(tmp_path, small_scan, assert_unchanged):
    path = tmp_path / "mismatch.nxs"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["definition"] = b"NXtomo"
        entry["instrument/detector/data"] = small_scan.projections
        entry["sample/rotation_angle"] = np.arange(5.0)
    _fails(path, InputError, "5 angles for 12 frames", assert_unchanged)


@pytest.mark.parametrize("fmt", ["h5", "npy", "tif"])
def test_wrong_ndim(tmp_path, fmt, assert_unchanged):
    path = tmp_path / f"flat_image.{fmt}"
    image = np.zeros((5, 6), np.float32)
    if fmt == "h5":
        with h5py.File(path, "w") as f:
            f["/exchange/data"] = image
    elif fmt == "npy":
        np.save(path, image)
    else:
        tifffile.imwrite(path, image)
    _fails(path, InputError, "3-D", assert_unchanged)


def test_flats_of_another_shape(tmp_path, small_scan, assert_unchanged):
    path = tmp_path / "flats.h5"
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = small_scan.projections
        f["/exchange/data_white"] = np.ones((2, 6, 7))
    _fails(path, InputError, r"flats have shape \(2, 6, 7\)", assert_unchanged)


def test_tiff_folder_frame_of_another_size(tmp_path, assert_unchanged):
    folder = tmp_path / "sizes"
    folder.mkdir()
    tifffile.imwrite(folder / "p0.tif", np.zeros((4, 4), np.uint16))
    tifffile.imwrite(folder / "p1.tif", np.zeros((4, 5), np.uint16))
    err = _fails(folder, InputError, "same size", assert_unchanged)
    assert "p1.tif" in str(err)


def test_truncated_and_pickled_npy(tmp_path, assert_unchanged):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((4, 8, 8), np.float32))
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(good.read_bytes()[:300])
    _fails(truncated, ScanReadError, "corrupt or truncated", assert_unchanged)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _fails(pickled, ScanReadError, "pickled.npy", assert_unchanged)


def test_bad_angles_file(tmp_path, assert_unchanged):
    folder = tmp_path / "angles"
    folder.mkdir()
    tifffile.imwrite(folder / "p0.tif", np.zeros((4, 4), np.uint16))
    (folder / "angles.txt").write_text("0\nninety\n")
    err = _fails(folder, ScanReadError, "not a number", assert_unchanged)
    assert "angles.txt" in str(err)


def test_zarr_group_without_projections(tmp_path, assert_unchanged):
    import zarr

    group = zarr.open_group(store=str(tmp_path / "empty.zarr"), mode="w")
    group.create_array("something", shape=(3,), dtype="f4")
    _fails(tmp_path / "empty.zarr", ScanReadError, "no projections array", assert_unchanged)
