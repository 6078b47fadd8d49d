"""Reconstruct widget: live preview, centre finding/check, volume with provenance, errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml._widgets.reconstruct import CENTRE_CHECK_LAYER, PREVIEW_LAYER

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari

N, ROWS, ANGLES = 32, 4, 60


@pytest.fixture(scope="module")
def projections():
    """Noise-free projections of a small phantom, rotation axis 2 px right of the detector middle."""
    from napari_tomoml.recon import project
    from napari_tomoml.sim.phantom import shepp_logan_3d

    theta = np.linspace(0, np.pi, ANGLES, endpoint=False)
    phantom = shepp_logan_3d(N, ROWS) * 0.05
    proj = np.asarray(project(phantom, theta, center=N / 2 + 2, device="cpu"), dtype=np.float32)
    return proj, theta


def _viewer_with(make_napari_viewer, projections, *, with_theta=True):
    proj, theta = projections
    viewer = make_napari_viewer()
    meta = {"theta": theta, "normalized": True} if with_theta else {}
    viewer.add_image(proj, name="proj", metadata=meta)
    widget = dock(viewer, "Reconstruct")
    widget.layer_combo.set_layer("proj")
    return viewer, widget


def _wait_preview(qtbot, widget):
    qtbot.waitUntil(lambda: widget._preview_worker is None and not widget._timer.isActive(), timeout=30_000)


def test_defaults_follow_the_layer(make_napari_viewer, qtbot, projections):
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    assert widget.centre() == pytest.approx(N / 2)
    assert widget.row_spin.value() == ROWS // 2
    assert (widget.row_start.value(), widget.row_stop.value()) == (0, ROWS)
    assert "60 angles" in widget.angles_label.text()
    assert not widget.normalise_check.isEnabled()
    np.testing.assert_allclose(widget.theta(), projections[1])


def test_angles_from_range_when_layer_has_none(make_napari_viewer, qtbot, projections):
    viewer, widget = _viewer_with(make_napari_viewer, projections, with_theta=False)
    assert widget.angle_box.isVisibleTo(widget)
    assert widget.last_angle.value() == pytest.approx(180 * (ANGLES - 1) / ANGLES)
    np.testing.assert_allclose(widget.theta(), projections[1], atol=1e-9)
    widget.last_angle.setValue(360 * (ANGLES - 1) / ANGLES)
    assert widget.theta()[-1] == pytest.approx(np.radians(360 * (ANGLES - 1) / ANGLES))


def test_live_preview_is_debounced_and_follows_parameters(make_napari_viewer, qtbot, projections):
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    _wait_preview(qtbot, widget)
    assert PREVIEW_LAYER in viewer.layers
    preview = viewer.layers[PREVIEW_LAYER]
    assert preview.data.shape == (N, N)
    for c in (15.0, 16.0, 17.0, 18.0):  # quick changes: one preview at the end
        widget.centre_spin.setValue(c)
    widget.filter_combo.setCurrentText("hann")
    assert widget._timer.isActive()
    _wait_preview(qtbot, widget)
    meta = viewer.layers[PREVIEW_LAYER].metadata
    assert meta["center"] == 18.0 and meta["filter_name"] == "hann" and meta["source"] == "proj"
    # placed to the right of the projections, so both stay visible, and framed with them
    assert viewer.layers[PREVIEW_LAYER].translate[-1] > N
    right = float(viewer.layers[PREVIEW_LAYER].extent.world[1][-1])
    camera = viewer.scene.camera
    half_width = viewer.canvas.size[-1] / camera.zoom / 2  # size: (height, width)
    assert camera.center[-1] - half_width <= 0 and camera.center[-1] + half_width >= right


def test_find_centre(make_napari_viewer, qtbot, projections, notifications):
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.find_centre_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    assert widget.centre() == pytest.approx(N / 2 + 2, abs=0.6)


def test_centre_check_stack(make_napari_viewer, qtbot, projections, notifications):
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.check_half_range.setValue(2.0)
    widget.check_step.setValue(1.0)
    widget.centre_check_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    stack = viewer.layers[CENTRE_CHECK_LAYER]
    assert stack.data.shape == (5, N, N)
    np.testing.assert_allclose(stack.metadata["centers"], widget.centre() + np.arange(-2, 3))


def test_reconstruct_volume_with_provenance(make_napari_viewer, qtbot, projections, notifications):
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.centre_spin.setValue(N / 2 + 2)
    widget.row_start.setValue(1)
    widget.row_stop.setValue(3)
    widget.device_combo.setCurrentText("cpu")
    widget.reconstruct_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    layer = widget.result_layer
    assert layer.name == "proj fbp"
    assert layer.data.shape == (2, N, N)
    assert tuple(layer.translate) == (1, 0, 0)
    meta = layer.metadata
    assert meta["task"] == "reconstruct" and meta["source"] == "proj"
    assert meta["parameters"]["center"] == N / 2 + 2
    assert meta["parameters"]["rows"] == [1, 3]
    assert not viewer.layers["proj"].visible


def test_reconstruct_iterative_can_be_cancelled(make_napari_viewer, qtbot, projections, notifications):
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.algorithm_combo.setCurrentText("sirt")
    widget.iter_spin.setValue(5000)
    widget.device_combo.setCurrentText("cpu")
    widget.reconstruct()
    qtbot.waitUntil(lambda: widget.runner.progress_value[0] > 0, timeout=30_000)
    widget.runner.cancel_button.click()
    assert wait_done(qtbot, widget.runner) == "cancelled"
    assert widget.result_layer is None and not notifications


def test_raw_projections_are_normalised_on_the_way(make_napari_viewer, qtbot, disc_scan, notifications):
    from napari_tomoml._reader import read_scan

    viewer = make_napari_viewer()
    data, kwargs, _ = read_scan(str(disc_scan))[0]
    viewer.add_image(data, **kwargs)
    widget = dock(viewer, "Reconstruct")
    widget.layer_combo.set_layer(kwargs["name"])
    assert widget.normalise_check.isEnabled() and widget.normalise_check.isChecked()
    _wait_preview(qtbot, widget)
    preview = viewer.layers[PREVIEW_LAYER].data
    # a uniform disc of 0.05 / px: the centre of the preview is close to 0.05, outside 0
    assert float(preview[12:20, 12:20].mean()) == pytest.approx(0.05, abs=0.01)
    assert abs(float(preview[:3, :3].mean())) < 0.01


def test_bad_data_is_a_notification_not_a_traceback(make_napari_viewer, qtbot, projections, notifications):
    proj, theta = projections
    bad = proj.copy()
    bad[3, 1, 5] = np.nan
    viewer = make_napari_viewer()
    viewer.add_image(bad, name="bad", metadata={"theta": theta, "normalized": True})
    widget = dock(viewer, "Reconstruct")
    widget.layer_combo.set_layer("bad")
    widget.live_check.setChecked(False)
    widget.reconstruct()
    assert wait_done(qtbot, widget.runner) == "error"
    assert notifications and "NaN" in notifications[0]
    assert widget.result_layer is None


def test_closing_the_dock_mid_preview_is_harmless(make_napari_viewer, qtbot, projections, notifications):
    proj, theta = projections
    viewer = make_napari_viewer()
    viewer.add_image(proj, name="proj", metadata={"theta": theta})
    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-tomoml", "Reconstruct")
    widget.update_preview()
    viewer.window.remove_dock_widget(dock_widget)
    qtbot.wait(50)
    viewer.add_image(proj[:, :1], name="another")  # the combo of the closed widget must not fail
    qtbot.wait(200)
    assert not notifications


def test_layer_choices_on_the_sample_data(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-tomoml", "phantom")
    viewer.add_image(viewer.layers["projections (low dose)"].data.transpose(1, 0, 2), name="sino",
                     metadata={"kind": "sinograms"})
    recon = dock(viewer, "Reconstruct")
    choices = [recon.layer_combo.itemText(i) for i in range(recon.layer_combo.count())]
    assert choices == ["projections (normal dose)", "projections (low dose)"]
    denoise = dock(viewer, "Denoise")
    volumes = [denoise.layer_combo.itemText(i) for i in range(denoise.layer_combo.count())]
    assert volumes == ["phantom (ground truth)"]
    recon.live_check.setChecked(False)


def _scroll_projections(viewer):
    """Look at a late angle of the projections, as a person browsing them would."""
    viewer.layers["proj"].visible = True
    viewer.dims.set_point(0, ANGLES - 5)


def test_reconstruct_result_is_in_view(make_napari_viewer, qtbot, projections, notifications):
    from .conftest import in_view

    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.live_check.setChecked(False)
    _scroll_projections(viewer)
    widget.row_start.setValue(1)
    widget.row_stop.setValue(3)
    widget.device_combo.setCurrentText("cpu")
    widget.reconstruct_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    layer = viewer.layers[widget.result_layer.name]
    in_view(viewer, layer)  # the slider moved from angle 55 into the 2-slice volume
    assert viewer.dims.axis_labels[-3:] == ("z", "y", "x")
    assert not viewer.layers["proj"].visible and "proj" in viewer.layers
    assert widget.save_button.isEnabled()


def test_centre_check_is_in_view_and_capped(make_napari_viewer, qtbot, projections, notifications):
    from .conftest import in_view

    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.live_check.setChecked(False)
    _scroll_projections(viewer)
    widget.check_half_range.setValue(50.0)  # ±50 px at 0.1 px: 1001 slices asked for
    widget.check_step.setValue(0.1)
    centres, warnings = widget.plan_centre_check()
    assert len(centres) <= 101 and any("clipped" in w for w in warnings)
    widget.centre_check_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    stack = viewer.layers[CENTRE_CHECK_LAYER]
    assert stack.data.shape[0] == len(centres) <= 101
    assert any("widened" in w or "clipped" in w for w in stack.metadata["warnings"])
    shown = in_view(viewer, stack)
    # the slice in view is the one at the current centre
    i = int(round(viewer.dims.point[0]))
    assert stack.metadata["centers"][i] == pytest.approx(widget.centre(), abs=0.5)
    assert shown.shape == (N, N)
    assert viewer.dims.axis_labels[-3] == "centre"


@pytest.mark.slow
def test_centre_check_can_be_cancelled(make_napari_viewer, qtbot, projections, notifications):
    """Cancel stops the stack at the next batch (latency per batch: benchmarks/bench_center_check.py)."""
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.live_check.setChecked(False)
    widget.check_half_range.setValue(15.0)
    widget.check_step.setValue(0.3)  # 101 slices: 13 batches, a chance to stop after each
    widget.centre_check()
    qtbot.waitUntil(lambda: widget.runner.progress_value[0] >= 1, timeout=30_000)
    widget.runner.cancel_button.click()
    assert wait_done(qtbot, widget.runner) == "cancelled"
    assert CENTRE_CHECK_LAYER not in viewer.layers and not notifications


def test_clamped_centre_and_guessed_angles_are_warned(make_napari_viewer, qtbot, projections, notifications):
    viewer, widget = _viewer_with(make_napari_viewer, projections, with_theta=False)
    widget.live_check.setChecked(False)
    widget.centre_spin.setValue(5000)
    assert widget.centre() == N
    warned = widget.warnings()
    assert any("clamped to 32.00 px" in w for w in warned)
    assert any("angles not in the layer" in w for w in warned)
    widget.centre_spin.setValue(N / 2 + 2)
    widget.device_combo.setCurrentText("cpu")
    widget.reconstruct_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    meta = widget.result_layer.metadata
    assert meta["warnings"] == ["angles not in the layer: assumed 60 evenly spaced from 0.0° to 177.0°"]


@pytest.mark.slow
def test_beamline_options_reach_the_result(make_napari_viewer, qtbot, projections, notifications, tmp_path):
    from napari_tomoml import read_volume

    viewer, widget = _viewer_with(make_napari_viewer, projections)
    widget.live_check.setChecked(False)
    widget.algorithm_combo.setCurrentText("tv")
    widget.iter_spin.setValue(2)
    widget.beamline.tv_spin.setValue(0.002)
    widget.beamline.support_check.setChecked(True)
    widget.beamline.rings_check.setChecked(True)
    widget.beamline.pad_spin.setValue(8)
    widget.beamline.size_spin.setValue(24)
    widget.row_start.setValue(1)
    widget.row_stop.setValue(3)
    widget.device_combo.setCurrentText("cpu")
    widget.reconstruct_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    layer = widget.result_layer
    assert layer.name == "proj tv 0.002 +rings" and layer.data.shape == (2, 24, 24)
    params = layer.metadata["parameters"]
    assert params["tv"] == 0.002 and params["nonneg"] is True and params["support"] is True
    assert params["prepare"] == {"rings": "sorting", "pad": 8} and params["n"] == 24
    written = widget.save_result(str(tmp_path / "rec.tif"))
    back = read_volume(written[0])
    np.testing.assert_allclose(np.asarray(back), layer.data)
    assert back.metadata["kind"] == "volume" and back.metadata["parameters"]["tv"] == 0.002
    assert widget.save_result(str(tmp_path / "rec.tif")) == []  # never over an existing file
    assert notifications and "exists" in notifications[-1]


@pytest.mark.slow
def test_paganin_in_the_widget_previews_and_reconstructs(make_napari_viewer, qtbot, projections, notifications):
    viewer, widget = _viewer_with(make_napari_viewer, projections)
    _wait_preview(qtbot, widget)
    plain = np.array(viewer.layers[PREVIEW_LAYER].data)
    widget.beamline.phase_box.setChecked(True)
    widget.beamline.delta_beta_spin.setValue(200.0)
    widget.update_preview()
    _wait_preview(qtbot, widget)
    preview = viewer.layers[PREVIEW_LAYER]
    assert preview.metadata["prepare"]["phase"]["delta_beta"] == 200.0
    assert not np.allclose(preview.data, plain)  # the low-pass of Paganin shows in the preview
    widget.device_combo.setCurrentText("cpu")
    widget.reconstruct_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    layer = widget.result_layer
    assert layer.name == "proj fbp +paganin"
    assert layer.metadata["parameters"]["prepare"]["phase"]["method"] == "paganin"
