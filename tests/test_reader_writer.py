"""The napari reader and writers, called through npe2 the way napari calls them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

from napari_tomoml import _reader, _writer  # noqa: E402
from napari_tomoml.errors import TomomlError  # noqa: E402
from napari_tomoml.io.scan import Scan  # noqa: E402
from napari_tomoml.io.writers import write_hdf5  # noqa: E402

PLUGIN = "napari-tomoml"


@pytest.fixture(scope="module", autouse=True)
def _plugin_registered():
    pm = npe2.PluginManager.instance()
    if PLUGIN not in pm._manifests:
        pm.register(npe2.PluginManifest.from_distribution(PLUGIN))


@pytest.fixture
def scan_h5(tmp_path, rng) -> Path:
    proj = rng.uniform(100, 1000, size=(12, 3, 16)).astype(np.float32)
    flats = np.full((2, 3, 16), 1200, np.float32)
    darks = np.full((2, 3, 16), 10, np.float32)
    theta = np.linspace(0, np.pi, 12, endpoint=False)
    return write_hdf5(tmp_path / "scan.h5", Scan(proj, theta, flats, darks))


def test_get_reader_accepts_scans_only(tmp_path, scan_h5):
    assert _reader.get_reader(str(scan_h5)) is _reader.read_scan
    assert _reader.get_reader([str(scan_h5)]) is _reader.read_scan
    assert _reader.get_reader([str(scan_h5), str(scan_h5)]) is None
    assert _reader.get_reader(str(tmp_path / "notes.txt")) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _reader.get_reader(str(empty)) is None


def test_single_2d_tiff_is_left_to_napari(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "photo.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    assert _reader.get_reader(str(tmp_path / "photo.tif")) is None
    assert _reader.get_reader(str(tmp_path / "stack.tif")) is _reader.read_scan


def test_read_dxchange_through_npe2(scan_h5):
    layers = npe2.read([str(scan_h5)], plugin_name=PLUGIN, stack=False)
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image" and data.shape == (12, 3, 16)
    meta = kwargs["metadata"]
    assert meta["theta"].shape == (12,) and meta["theta"].max() < np.pi
    assert meta["n_flats"] == 2 and meta["n_darks"] == 2
    assert meta["flats"].shape == (2, 3, 16)
    assert meta["normalized"] is False
    assert meta["source"] == str(scan_h5)
    assert "12 x 3 x 16" in meta["summary"]
    lo, hi = kwargs["contrast_limits"]
    assert 100 <= lo < hi <= 1000
    assert kwargs["name"] == "scan projections"


def test_lazy_scan_stays_lazy(tmp_path, rng, monkeypatch):
    import dask.array as da

    from napari_tomoml.io import writers

    path = writers.write_zarr(tmp_path / "big.zarr", rng.random((10, 4, 8)).astype(np.float32))
    # pretend every file is large: the reader must keep it on disk and sample only a few frames
    monkeypatch.setattr("napari_tomoml.io._common.LAZY_THRESHOLD_BYTES", 0)
    data, kwargs, _ = _reader.read_scan(str(path))[0]
    assert isinstance(data, da.Array)
    assert kwargs["contrast_limits"][1] > kwargs["contrast_limits"][0]


def test_read_shared_tiff_folder(shared_data):
    folder = shared_data / "real" / "savu_i13_24737_tiff"
    data, kwargs, _ = npe2.read([str(folder)], plugin_name=PLUGIN, stack=False)[0]
    assert data.shape == (91, 135, 160)
    assert kwargs["metadata"]["theta"].shape == (91,)
    assert kwargs["metadata"]["n_flats"] == 1


def test_unreadable_file_raises_scan_error(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(TomomlError):
        _reader.read_scan(str(bad))


@pytest.mark.parametrize("ext", [".tif", ".h5", ".zarr"])
def test_write_and_read_back_through_npe2(tmp_path, rng, ext):
    volume = rng.random((4, 8, 8)).astype(np.float32)
    meta = {"name": "rec", "metadata": {"task": "reconstruct", "theta": np.zeros(3), "center": 3.5}}
    path = tmp_path / f"rec{ext}"
    written = npe2.write(str(path), [(volume, meta, "image")], plugin_name=PLUGIN)
    assert [Path(p) for p in written] == [path]
    data, _, _ = npe2.read([str(path)], plugin_name=PLUGIN, stack=False)[0]
    np.testing.assert_allclose(np.asarray(data), volume)


def test_writer_never_overwrites(tmp_path, rng):
    path = tmp_path / "rec.tif"
    volume = rng.random((2, 4, 4)).astype(np.float32)
    _writer.write_tiff(str(path), volume, {"name": "rec"})
    with pytest.raises(TomomlError, match="exists"):
        _writer.write_tiff(str(path), volume, {"name": "rec"})


def test_provenance_keeps_only_plain_values():
    meta = {"name": "rec", "metadata": {"task": "reconstruct", "center": np.float32(3.5), "theta": np.zeros(3),
                                         "scan": object(), "flats": [np.zeros((2, 2))],
                                         "parameters": {"filter_name": "ramp", "rows": [0, 4]}}}
    prov = _writer._provenance(meta)
    assert prov == {"layer_name": "rec", "task": "reconstruct", "center": 3.5,
                    "parameters": {"filter_name": "ramp", "rows": [0, 4]}}


@pytest.mark.parametrize("scan_path, ext", [("real/tooth.h5", ".h5"), ("real/savu_i13_24737_tiff", ".tif")])
def test_real_scans_reopen_from_saved_outputs_as_volumes(shared_data, tmp_path, scan_path, ext):
    """tooth (DXchange) and Savu (TIFF folder): reconstruct, save through napari's writer, reopen."""
    import napari_tomoml as tm

    data, kwargs, _ = npe2.read([str(shared_data / scan_path)], plugin_name=PLUGIN, stack=False)[0]
    assert kwargs["metadata"]["kind"] == "projections"
    scan = tm.load_scan(shared_data / scan_path)
    rows = slice(0, 2) if scan.shape[1] <= 2 else slice(60, 62)
    proj = tm.normalize(scan)[:, rows]
    volume, meta = tm.reconstruct(proj, scan.theta, center=tm.find_center(proj, scan.theta), device="cpu")
    layer_meta = {"name": "rec fbp", "metadata": {**meta, "kind": "volume", "source": str(scan_path)}}
    path = tmp_path / f"rec{ext}"
    npe2.write(str(path), [(volume, layer_meta, "image")], plugin_name=PLUGIN)

    back = tm.read_volume(path)
    np.testing.assert_array_equal(np.asarray(back), volume)
    assert back.metadata["kind"] == "volume" and back.metadata["task"] == "reconstruct"
    assert back.metadata["parameters"]["center"] == pytest.approx(meta["center"])
    assert back.metadata["parameters"]["algorithm"] == "fbp"
    data, kwargs, _ = npe2.read([str(path)], plugin_name=PLUGIN, stack=False)[0]
    np.testing.assert_array_equal(np.asarray(data), volume)
    assert kwargs["name"] == "rec fbp" and kwargs["metadata"]["kind"] == "volume"
    assert kwargs["metadata"]["source"] == str(path)
    assert kwargs["axis_labels"] == ("z", "y", "x")


def test_pixel_size_becomes_layer_scale(tmp_path, scan_h5):
    import h5py

    with h5py.File(scan_h5, "a") as f:
        f["/measurement/instrument/detection_system/objective/resolution"] = 0.65
    _, kwargs, _ = _reader.read_scan(str(scan_h5))[0]
    assert kwargs["metadata"]["pixel_size_um"] == pytest.approx(0.65)
    assert kwargs["scale"] == (1.0, 0.65, 0.65)
