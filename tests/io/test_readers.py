"""Every format round-trips through the writers (or a hand-made file) and load_scan."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from napari_tomoml.errors import InputError
from napari_tomoml.io import (
    Scan,
    load_scan,
    write_hdf5,
    write_tiff_stack,
    write_zarr,
)


def _same(scan: Scan, ref: Scan, *, refs: bool = True) -> None:
    np.testing.assert_array_equal(np.asarray(scan.projections), ref.projections)
    np.testing.assert_allclose(scan.theta, ref.theta, atol=1e-6)
    assert scan.theta.dtype == np.float32
    if refs:
        np.testing.assert_array_equal(scan.flats, ref.flats)
        np.testing.assert_array_equal(scan.darks, ref.darks)


def test_dxchange_round_trip(tmp_path, small_scan):
    path = write_hdf5(tmp_path / "scan.h5", small_scan)
    scan = load_scan(path)
    _same(scan, small_scan)
    assert scan.metadata["format"] == "dxchange" and scan.metadata["center"] == 3.5
    with h5py.File(path) as f:
        assert f["/exchange/theta"].attrs["units"] == "degrees"
        np.testing.assert_allclose(f["/exchange/theta"][:], np.arange(12) * 15.0)


def test_dxchange_without_theta_flats_darks_uses_documented_defaults(tmp_path, small_scan):
    path = tmp_path / "bare.hdf5"
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = small_scan.projections
    scan = load_scan(path)
    assert scan.flats is None and scan.darks is None
    np.testing.assert_allclose(scan.theta, np.linspace(0, np.pi, 12, endpoint=False), atol=1e-6)
    notes = " ".join(scan.metadata["notes"])
    assert "theta" in notes and "data_white" in notes and "data_dark" in notes


def test_dxchange_theta_in_radians_is_honoured(tmp_path, small_scan):
    path = tmp_path / "rad.h5"
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = small_scan.projections
        f["/exchange/theta"] = small_scan.theta.astype(np.float64)
        f["/exchange/theta"].attrs["units"] = "rad"
    np.testing.assert_allclose(load_scan(path).theta, small_scan.theta, atol=1e-6)


def _nxtomo(path, small_scan, *, units="degree", definition=True, layout="detector"):
    """An NXtomo file: darks, flats, projections, a flat at the end and an alignment frame (key 3)."""
    p, fl, dk = small_scan.projections, small_scan.flats, small_scan.darks
    frames = np.concatenate([dk, fl[:1], p, fl[1:], p[:1]])
    keys = np.array([2, 2, 1] + [0] * len(p) + [1, 3])
    deg = np.degrees(small_scan.theta.astype(np.float64))
    angles = np.concatenate([[0, 0, 0], deg, [180, 0]])
    if units.startswith("rad"):
        angles = np.radians(angles)
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry1")
        entry.attrs["NX_class"] = "NXentry"
        if definition:
            entry["definition"] = "NXtomo"
        det = entry.create_group("instrument/detector")
        if layout == "detector":
            det["data"] = frames
            det["image_key"] = keys
        else:
            entry["data/data"] = frames
            entry["data/image_key"] = keys
        entry["sample/rotation_angle"] = angles
        entry["sample/rotation_angle"].attrs["units"] = units


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(units="rad"), dict(definition=False), dict(layout="data")],
    ids=["degrees", "radians", "nx-class-only", "data-data"],
)
def test_nxtomo_splits_frames_by_image_key(tmp_path, small_scan, kwargs):
    path = tmp_path / "scan.nxs"
    _nxtomo(path, small_scan, **kwargs)
    scan = load_scan(path)
    assert scan.metadata["format"] == "nxtomo"
    _same(scan, small_scan)


def _tiff_folder(folder, small_scan, *, angles=None, names=("p{}.tif", "flat_{}.tiff", "DF{}.tif")):
    folder.mkdir()
    # p1..p12 on purpose: natural order puts p10 after p9, plain sorting would not
    for i, frame in enumerate(small_scan.projections, 1):
        tifffile.imwrite(folder / names[0].format(i), frame)
    for i, frame in enumerate(small_scan.flats):
        tifffile.imwrite(folder / names[1].format(i), frame)
    for i, frame in enumerate(small_scan.darks):
        tifffile.imwrite(folder / names[2].format(i), frame)
    if angles is not None:
        (folder / "angles.txt").write_text("\n".join(f"{a:g}" for a in angles) + "\n")
    return folder


def test_tiff_folder_natural_order_flats_darks_and_angles(tmp_path, small_scan):
    folder = _tiff_folder(tmp_path / "tiffs", small_scan, angles=np.arange(12) * 15.0)
    scan = load_scan(folder)
    _same(scan, small_scan)
    assert scan.metadata["format"] == "tiff-folder" and scan.metadata["notes"] == []


def test_tiff_folder_angle_list_padded_at_both_ends_is_trimmed(tmp_path, small_scan):
    padded = [0.0] * 4 + list(np.arange(12) * 15.0) + [165.0001] * 3
    scan = load_scan(_tiff_folder(tmp_path / "tiffs", small_scan, angles=padded))
    np.testing.assert_allclose(np.degrees(scan.theta), np.arange(12) * 15.0, atol=1e-3)
    assert "19 angles for 12 projections" in scan.metadata["notes"][0]


def test_tiff_folder_angle_count_mismatch_names_both_counts(tmp_path, small_scan):
    folder = _tiff_folder(tmp_path / "tiffs", small_scan, angles=np.arange(10) * 15.0)
    with pytest.raises(InputError, match=r"10 angles .* for 12 projections") as info:
        load_scan(folder)
    assert "angles.txt" in str(info.value)


def test_tiff_folder_without_angles_file_spreads_over_180(tmp_path, small_scan):
    scan = load_scan(_tiff_folder(tmp_path / "tiffs", small_scan))
    np.testing.assert_allclose(scan.theta, np.linspace(0, np.pi, 12, endpoint=False), atol=1e-6)
    assert any("evenly spaced" in n for n in scan.metadata["notes"])


def test_tiff_stack_round_trip_keeps_angles(tmp_path, small_scan):
    path = write_tiff_stack(tmp_path / "stack.tif", small_scan.projections, theta=small_scan.theta)
    scan = load_scan(path)
    _same(scan, small_scan, refs=False)
    assert scan.metadata["format"] == "tiff-stack" and scan.flats is None


def test_tiff_stack_angles_from_side_file(tmp_path, small_scan):
    path = tmp_path / "stack.tiff"
    tifffile.imwrite(path, small_scan.projections)
    (tmp_path / "stack.angles").write_text(" ".join(str(a) for a in np.arange(12) * 15.0))
    _same(load_scan(path), small_scan, refs=False)


def test_npy_is_memory_mapped_with_side_angles(tmp_path, small_scan):
    path = tmp_path / "proj.npy"
    np.save(path, small_scan.projections)
    (tmp_path / "proj.angles").write_text("\n".join(str(a) for a in np.arange(12) * 15.0))
    scan = load_scan(path)
    assert isinstance(scan.projections, np.memmap) and scan.lazy
    _same(scan, small_scan, refs=False)
    eager = load_scan(path, lazy=False)
    assert type(eager.projections) is np.ndarray


def test_zarr_round_trip(tmp_path, small_scan):
    path = write_zarr(tmp_path / "scan.zarr", small_scan)
    scan = load_scan(path)
    _same(scan, small_scan)
    assert scan.metadata["format"] == "zarr" and scan.metadata["center"] == 3.5


def test_zarr_dxchange_names_and_single_array(tmp_path, small_scan):
    group = zarr.open_group(store=str(tmp_path / "dx"), mode="w")
    for name, arr in (
        ("data", small_scan.projections),
        ("data_white", small_scan.flats),
        ("data_dark", small_scan.darks),
        ("theta", np.arange(12) * 15.0),
    ):
        group.create_array(f"exchange/{name}", shape=arr.shape, dtype=arr.dtype)[...] = arr
    _same(load_scan(tmp_path / "dx"), small_scan)

    single = zarr.create_array(store=str(tmp_path / "single.zarr"), shape=(12, 6, 8), dtype="uint16")
    single[...] = small_scan.projections
    scan = load_scan(tmp_path / "single.zarr")
    np.testing.assert_array_equal(scan.projections, small_scan.projections)
    assert scan.flats is None


def test_write_hdf5_plain_volume_at_custom_dataset(tmp_path, rng):
    vol = rng.random((3, 4, 5)).astype(np.float32)
    path = write_hdf5(tmp_path / "rec.h5", vol, dataset="/recon/volume")
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["/recon/volume"][()], vol)
