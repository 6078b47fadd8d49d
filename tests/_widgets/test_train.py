"""Train TomoGAN widget: pairs from two layers, live losses, Stop still saves, a model file results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari


@pytest.fixture
def pair_layers(make_napari_viewer, rng):
    from scipy import ndimage

    clean = ndimage.gaussian_filter(rng.random((6, 32, 32)), 2).astype(np.float32)
    noisy = (clean + 0.05 * rng.standard_normal(clean.shape)).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    widget = dock(viewer, "Train TomoGAN")
    widget.noisy_combo.set_layer("noisy")
    widget.clean_combo.set_layer("clean")
    widget.depth_combo.setCurrentText("1")
    widget.batch_spin.setValue(2)
    widget.crop_spin.setValue(16)
    widget.lambda_adv.setValue(0.0)  # no critic: fast
    widget.device_combo.setCurrentText("cpu")
    return viewer, widget


def test_train_saves_a_model_the_denoiser_loads(pair_layers, qtbot, tmp_path, notifications):
    from napari_tomoml.models.store import load_model

    viewer, widget = pair_layers
    widget.steps_spin.setValue(4)
    widget.val_every_spin.setValue(2)
    widget.save_edit.setText(str(tmp_path / "my-tomogan"))
    widget.train_button.click()
    assert wait_done(qtbot, widget.runner, timeout=120_000) == "ok", notifications
    assert widget.saved_path == tmp_path / "my-tomogan.safetensors"
    card = json.loads((tmp_path / "my-tomogan.json").read_text())
    assert card["training"]["steps"] == 4 and card["training"]["stopped_by_user"] is False
    assert "psnr" in card["metrics"]
    assert load_model(widget.saved_path).card["config"]["depth"] == 1
    assert "step 4/4" in widget.status_label.text() or "saved" in widget.status_label.text()
    assert len(widget.plot.series["train"]) == 4 and len(widget.plot.series["val"]) == 2


def test_stop_keeps_the_best_weights(pair_layers, qtbot, tmp_path, notifications):
    viewer, widget = pair_layers
    widget.steps_spin.setValue(100_000)
    widget.val_every_spin.setValue(2)
    widget.save_edit.setText(str(tmp_path / "stopped"))
    widget.train()
    qtbot.waitUntil(lambda: len(widget.plot.series["val"]) >= 1, timeout=120_000)
    widget.runner.cancel_button.click()
    assert wait_done(qtbot, widget.runner, timeout=120_000) == "ok", notifications
    card = json.loads((tmp_path / "stopped.json").read_text())
    assert card["training"]["stopped_by_user"] is True
    assert (tmp_path / "stopped.safetensors").is_file()


def test_missing_save_path_and_same_layer_are_reported(pair_layers, qtbot, notifications, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    viewer, widget = pair_layers
    widget.clean_combo.set_layer("noisy")
    assert widget.train() is None
    assert "same layer" in shown[0]
    widget.clean_combo.set_layer("clean")
    widget.train()
    assert wait_done(qtbot, widget.runner) == "error"
    assert "save" in notifications[0]


@pytest.mark.slow
def test_default_pairs_by_name_and_metadata(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    vol = rng.random((2, 16, 16)).astype(np.float32)
    viewer.add_image(vol, name="phantom (ground truth)", metadata={"kind": "volume"})  # as the sample data
    for name in ("projections (normal dose) fbp", "projections (low dose) fbp"):
        viewer.add_image(vol, name=name, metadata={"task": "reconstruct", "kind": "volume"})
    viewer.add_image(vol[0], name="reconstruction preview", metadata={"task": "preview"})
    widget = dock(viewer, "Train TomoGAN")
    assert widget.noisy_combo.currentText() == "projections (low dose) fbp"
    assert widget.clean_combo.currentText() == "projections (normal dose) fbp"
    widget.noisy_combo.set_layer("projections (normal dose) fbp")  # a person's choice stays
    viewer.add_image(vol, name="another low dose", metadata={"kind": "volume"})
    assert widget.noisy_combo.currentText() == "projections (normal dose) fbp"


def test_loss_plot_has_labelled_axes(pair_layers, qtbot):
    _, widget = pair_layers
    plot = widget.plot
    for step, loss in enumerate([1.0, 0.5, 0.2], start=1):
        plot.add("train", step, loss)
    plot.add("val", 2, 0.3)
    assert plot.bounds() == (1.0, 3.0, pytest.approx(np.log10(0.2)), 0.0)
    assert (plot.X_LABEL, plot.Y_LABEL) == ("training step", "loss (log scale)")
    image = plot.grab().toImage()  # paints: labels, ticks and curves
    assert image.width() > 0
