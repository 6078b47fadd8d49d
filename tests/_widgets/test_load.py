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
