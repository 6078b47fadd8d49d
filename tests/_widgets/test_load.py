"""Load widget: inspect a scan, add projections and sinograms with the scan's metadata."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari


def test_inspect_and_load_normalised(make_napari_viewer, qtbot, disc_scan, notifications):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Load scan")
    widget.set_path(disc_scan)
    assert wait_done(qtbot, widget.runner) == "ok"
    assert "48 x 4 x 32" in widget.summary_label.text()
    assert "flats: 3, darks: 2" in widget.summary_label.text()

    widget.normalise_check.setChecked(True)
    widget.load_button.click()
    assert wait_done(qtbot, widget.runner) == "ok"
    assert not notifications
    proj = viewer.layers["disc line integrals"]
    sino = viewer.layers["disc sinograms"]
    assert proj.data.shape == (48, 4, 32) and proj.data.dtype == np.float32
    assert sino.data.shape == (4, 48, 32)
    np.testing.assert_array_equal(np.asarray(sino.data[1]), np.asarray(proj.data[:, 1]))
    meta = proj.metadata
    assert meta["normalized"] is True
    assert meta["theta"].shape == (48,)
    assert (meta["n_flats"], meta["n_darks"]) == (3, 2)
    assert meta["source"] == str(disc_scan)
    # normalised: −log transmission of a 0.05/px disc, at most 0.05 * 20 = 1.0
    assert float(np.max(proj.data)) == pytest.approx(1.0, abs=0.05)
    assert proj.contrast_limits[1] > proj.contrast_limits[0]
    assert viewer.layers.selection.active is proj


def test_load_raw_without_sinograms(make_napari_viewer, qtbot, disc_scan, notifications):
    from napari_tomoml._widgets.load import LoadWidget

    viewer = make_napari_viewer()
    widget = LoadWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.path_edit.setText(str(disc_scan))
    widget.normalise_check.setChecked(False)
    widget.sinogram_check.setChecked(False)
    widget.load()
    assert wait_done(qtbot, widget.runner) == "ok"
    assert [layer.name for layer in viewer.layers] == ["disc projections"]
    layer = viewer.layers["disc projections"]
    assert layer.metadata["normalized"] is False
    assert layer.metadata["flats"].shape == (3, 4, 32)
    assert float(np.max(layer.data)) == pytest.approx(1000.0)


def test_bad_file_shows_notification(make_napari_viewer, qtbot, tmp_path, notifications):
    from napari_tomoml._widgets.load import LoadWidget

    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"this is not HDF5")
    viewer = make_napari_viewer()
    widget = LoadWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.path_edit.setText(str(bad))
    widget.load()
    assert wait_done(qtbot, widget.runner) == "error"
    assert len(notifications) == 1 and "broken.h5" in notifications[0]
    assert len(viewer.layers) == 0
    assert widget.load_button.isEnabled()


def test_missing_file_in_inspect_shows_message(make_napari_viewer, qtbot, tmp_path, notifications):
    from napari_tomoml._widgets.load import LoadWidget

    viewer = make_napari_viewer()
    widget = LoadWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_path(tmp_path / "nothing.h5")
    assert wait_done(qtbot, widget.runner) == "error"
    assert "Cannot read" in widget.summary_label.text()
    assert notifications and "nothing.h5" in notifications[0]


def test_loaded_projections_and_sinograms_come_into_view(make_napari_viewer, qtbot, disc_scan, notifications):
    from .conftest import in_view

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((3, 32, 32)), name="an earlier volume")
    viewer.dims.set_point(0, 2)
    widget = dock(viewer, "Load scan")
    widget.set_path(disc_scan)
    assert wait_done(qtbot, widget.runner) == "ok"
    widget.load_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    proj, sino = viewer.layers["disc line integrals"], viewer.layers["disc sinograms"]
    in_view(viewer, proj)
    assert viewer.dims.axis_labels[-3:] == ("angle", "row", "col")
    assert proj.metadata["units"].startswith("line integral")  # not "counts" once normalised
    widget.view_button.click()  # Show sinograms
    in_view(viewer, sino)
    assert not proj.visible and viewer.dims.axis_labels[-3:] == ("row", "angle", "col")
    # the sinograms' own contrast, not the projections'
    assert sino.contrast_limits[1] <= float(np.max(sino.data)) + 1e-6
    widget.view_button.click()
    in_view(viewer, proj)


def test_open_tooth_without_naming_the_plugin(shared_data, make_napari_viewer):  # skips before the viewer starts
    """`viewer.open(path, plugin=None)` (File ▸ Open, drag and drop) picks our reader once
    napari-tomoml is the preferred reader for .h5 (scripts/run_napari.py sets it)."""
    from napari.settings import get_settings

    from napari_tomoml._reader import prefer_tomoml_reader

    viewer = make_napari_viewer()
    prefer_tomoml_reader(get_settings())
    layers = viewer.open(str(shared_data / "real" / "tooth.h5"), plugin=None)
    assert [la.name for la in layers] == ["tooth projections"]
    assert layers[0].data.shape == (181, 2, 640) and layers[0].metadata["kind"] == "projections"


def test_guessed_angles_are_a_warning(make_napari_viewer, qtbot, tmp_path, notifications, monkeypatch):
    shown: list[str] = []  # show_result reports the result's warnings
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    np.save(tmp_path / "scan.npy", np.random.default_rng(0).random((12, 2, 16)).astype(np.float32) + 0.5)
    viewer = make_napari_viewer()
    widget = dock(viewer, "Load scan")
    widget.path_edit.setText(str(tmp_path / "scan.npy"))
    widget.sinogram_check.setChecked(False)
    widget.load()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    layer = viewer.layers["scan line integrals"]
    assert any("angles assumed" in w for w in layer.metadata["warnings"])
    assert any("angles assumed" in w for w in shown)
