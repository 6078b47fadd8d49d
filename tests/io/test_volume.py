"""read_volume reads back what the writers wrote (and provenance metadata survives)."""

from __future__ import annotations

import json

import dask.array as da
import h5py
import numpy as np
import pytest
import zarr

from napari_tomoml.errors import InputError, ScanReadError
from napari_tomoml.io import load_scan, read_volume, write_hdf5, write_tiff_stack, write_zarr

PROVENANCE = {"task": "reconstruct", "center": 3.5, "parameters": {"filter_name": "ramp"}}


@pytest.mark.parametrize(
    "name, writer", [("rec.h5", write_hdf5), ("rec.zarr", write_zarr), ("rec.tif", write_tiff_stack)]
)
def test_volume_round_trip_with_provenance(tmp_path, rng, name, writer):
    vol = rng.random((3, 5, 4)).astype(np.float32)
    path = writer(tmp_path / name, vol, metadata=PROVENANCE)
    back = read_volume(path)
    np.testing.assert_array_equal(back, vol)
    assert back.metadata["kind"] == "volume"
    assert {k: back.metadata[k] for k in PROVENANCE} == PROVENANCE  # provenance read back
    assert isinstance(read_volume(path, lazy=True).data, da.Array)
    if name.endswith(".h5"):
        with h5py.File(path) as f:
            attrs = f["/exchange/data"].attrs
            assert attrs["task"] == "reconstruct" and json.loads(attrs["parameters"]) == {
                "filter_name": "ramp"
            }
    elif name.endswith(".zarr"):
        assert dict(zarr.open_group(store=str(path), mode="r")["data"].attrs) == PROVENANCE
    assert load_scan(path).metadata["center"] == 3.5


def test_volume_from_custom_dataset_npy_and_2d(tmp_path, rng):
    vol = rng.random((2, 3, 4)).astype(np.float32)
    path = write_hdf5(tmp_path / "rec.h5", vol, dataset="/recon/volume")
    np.testing.assert_array_equal(read_volume(path), vol)  # the file's only 3-D dataset
    np.save(tmp_path / "v.npy", vol)
    assert isinstance(read_volume(tmp_path / "v.npy").data, np.memmap)
    assert read_volume(tmp_path / "v.npy").metadata["kind"] == "projections"  # nothing says otherwise
    image = write_tiff_stack(tmp_path / "slice.tif", vol[0])
    np.testing.assert_array_equal(read_volume(image), vol[0])


def test_volume_errors_name_the_file(tmp_path, assert_unchanged):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((2, 2, 2))
        f["b"] = np.zeros((2, 2, 2))
    with assert_unchanged(path), pytest.raises(ScanReadError, match="pass dataset=") as info:
        read_volume(path)
    assert "two.h5" in str(info.value)
    np.testing.assert_array_equal(read_volume(path, dataset="/b"), 0)
    with pytest.raises(InputError, match="4-D|2-D image or 3-D"):
        np.save(tmp_path / "v4.npy", np.zeros((1, 2, 2, 2)))
        read_volume(tmp_path / "v4.npy")
    with pytest.raises(ScanReadError, match="no such file"):
        read_volume(tmp_path / "missing.zarr")
    with pytest.raises(InputError, match="JSON"):
        write_hdf5(tmp_path / "x.h5", np.zeros((2, 2, 2)), metadata={"bad": object()})


@pytest.mark.parametrize(
    "layout, field, value, units, expected",
    [
        ("dxchange", "/measurement/instrument/detection_system/objective/resolution", 0.65, None, 0.65),
        ("dxchange", "/measurement/instrument/detector/actual_pixel_size_x", 1.3, "mm", 1300.0),
        ("nxtomo", "/entry/instrument/detector/x_pixel_size", 6.5e-6, "m", 6.5),
    ],
)
def test_pixel_size_from_dxchange_and_nxtomo(tmp_path, layout, field, value, units, expected):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        if layout == "dxchange":
            f["/exchange/data"] = np.ones((3, 2, 4), np.float32)
        else:
            entry = f.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            entry["definition"] = "NXtomo"
            f["/entry/instrument/detector/data"] = np.ones((3, 2, 4), np.float32)
            f["/entry/instrument/detector/image_key"] = np.zeros(3, int)
        f[field] = value
        if units:
            f[field].attrs["units"] = units
    assert load_scan(path).metadata["pixel_size_um"] == pytest.approx(expected)
    assert read_volume(path).metadata["pixel_size_um"] == pytest.approx(expected)
