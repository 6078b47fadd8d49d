"""Train segmenter and Segment widgets: painted labels -> a model -> a Labels layer in view."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml.models.store import bundled_models
from napari_tomoml.sim.segmentation import annotation_strokes, segmentation_image

from .conftest import dock, in_view, wait_done

pytestmark = pytest.mark.napari


@pytest.fixture
def painted():
    image, mask = segmentation_image((96, 96), "pores", noise=0.05, seed=0)
    return image, annotation_strokes(mask, 0.05, seed=0)


def _train(viewer, qtbot, steps=4):
    widget = dock(viewer, "Train segmenter")
    widget.image_combo.set_layer("scan")
    widget.labels_combo.set_layer("strokes")
    widget.patch_spin.setValue(48)
    widget.steps_spin.setValue(steps)
    widget.device_combo.setCurrentText("cpu")
    return widget


@pytest.mark.slow
def test_train_from_painted_labels_save_and_segment(make_napari_viewer, qtbot, tmp_path, painted, notifications):
    image, strokes = painted
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    viewer.add_labels(strokes, name="strokes")
    widget = _train(viewer, qtbot, steps=6)
    assert widget.sparse_check.isChecked()  # as painted: 0 = not annotated
    widget.train_button.click()
    assert wait_done(qtbot, widget.runner, timeout=240_000) == "ok", notifications
    assert widget.model.card["classes"]["values"] == [1, 2]
    assert len(widget.plot.points["loss"][0]) == 6 and len(widget.plot.points["dice"][0]) >= 1
    assert "validation Dice" in widget.status_label.text()

    widget.save_edit.setText(str(tmp_path / "painted"))
    assert widget.save() == tmp_path / "painted.safetensors"
    assert widget.save() is None and "exists" in notifications[-1]  # never written over

    seg = dock(viewer, "Segment")
    seg.image_combo.set_layer("scan")
    seg.set_model("trained: scan")
    seg.prob_check.setChecked(True)
    seg.device_combo.setCurrentText("cpu")
    seg.segment_button.click()
    assert wait_done(qtbot, seg.runner) == "ok", notifications
    labels = viewer.layers["scan segmented"]
    assert labels._type_string == "labels" and labels.data.shape == image.shape
    assert set(np.unique(labels.data)) <= {1, 2} and labels.metadata["task"] == "segment"
    assert labels.metadata["source"] == "scan"
    assert viewer.layers["scan probabilities"].data.shape == (2, *image.shape)
    assert labels.visible and not viewer.layers["scan probabilities"].visible


@pytest.mark.skipif("unet-synthetic" not in bundled_models(), reason="bundled model not trained yet")
def test_bundled_model_result_is_in_view(make_napari_viewer, qtbot, notifications):
    image, _ = segmentation_image((128, 128), "mixed", seed=4)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    seg = dock(viewer, "Segment")
    seg.set_model("unet-synthetic")
    assert seg.model_combo.currentText() == "unet-synthetic"
    seg.device_combo.setCurrentText("cpu")
    seg.segment()
    assert wait_done(qtbot, seg.runner) == "ok", notifications
    view = in_view(viewer, viewer.layers["scan segmented"])
    assert set(np.unique(view)) == {0, 1, 2}


@pytest.mark.slow
def test_stop_keeps_the_best_model(make_napari_viewer, qtbot, painted, notifications):
    image, strokes = painted
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    viewer.add_labels(strokes, name="strokes")
    widget = _train(viewer, qtbot, steps=5000)
    widget.train_button.click()
    qtbot.waitUntil(lambda: len(widget.plot.points["dice"][0]) >= 1, timeout=240_000)
    widget.runner.cancel_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    assert widget.model is not None and widget.model.card["training"]["stopped"] == "by user"
    assert widget.model.card["training"]["steps"] < 5000


def test_bad_labels_are_a_notification(make_napari_viewer, qtbot, painted, notifications):
    image, _ = painted
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    viewer.add_labels(np.zeros(image.shape, np.uint8), name="strokes")  # nothing painted yet
    widget = _train(viewer, qtbot)
    widget.train()
    assert wait_done(qtbot, widget.runner) == "error"
    assert "no annotated pixel" in notifications[0]
    assert widget.model is None and widget.train_button.isEnabled()


def test_segment_with_a_model_file_and_a_volume(make_napari_viewer, qtbot, tmp_path, notifications):
    import torch

    from napari_tomoml.models.store import save_model
    from napari_tomoml.models.unet import UNet

    torch.manual_seed(0)
    model = save_model(UNet(classes=3, depth=2, width=4), tmp_path / "tiny-unet")
    viewer = make_napari_viewer()
    volume = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    viewer.add_image(volume, name="vol", scale=(2, 1, 1))
    seg = dock(viewer, "Segment")
    seg.image_combo.set_layer("vol")
    seg.set_model(model)
    assert seg.model_combo.currentText() == "Model file…"
    seg.device_combo.setCurrentText("cpu")
    seg.segment()
    assert wait_done(qtbot, seg.runner) == "ok", notifications
    labels = viewer.layers["vol segmented"]
    assert labels.data.shape == (3, 40, 40) and tuple(labels.scale) == (2, 1, 1)
    assert labels.metadata["model"] == str(model)
