"""PtychoNN live widget: docks from the manifest, streams a simulated scan into a growing layer with counters."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari


@pytest.fixture
def tiny_model(tmp_path):
    import torch

    from napari_tomoml.models.ptychonn import PtychoNN
    from napari_tomoml.models.store import save_model

    torch.manual_seed(0)
    net = PtychoNN(nconv=4)
    net.input_scale.fill_(0.1)
    return save_model(net, tmp_path / "pnn", training={"size": 16})


@pytest.fixture
def scan_folder(tmp_path):
    from napari_tomoml.cli import main

    folder = tmp_path / "scan"
    assert main(["ptycho", "simulate", str(folder), "--size", "16", "--shape", "48", "48", "--aperture", "0.3",
                 "--overlap", "0.5", "--photons", "1e4"]) == 0
    return folder


def test_live_widget_streams_into_a_layer(make_napari_viewer, qtbot, tiny_model, scan_folder, notifications):
    viewer = make_napari_viewer()
    widget = dock(viewer, "PtychoNN live")
    widget.model_edit.setText(str(tiny_model))
    widget.location_edit.setText(str(scan_folder))
    widget.rate_spin.setValue(100)
    widget.device_combo.setCurrentText("cpu")
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.counters.get("inferred", 0) > 0, timeout=30_000)  # live, before the end
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    n = len(np.load(scan_folder / "positions.npy"))
    assert widget.counters["inferred"] == widget.counters["received"] == n
    assert widget.counters["dropped"] == 0
    layer = viewer.layers["ptycho phase (live)"]
    assert layer.data.ndim == 2 and np.isfinite(layer.data).all() and layer.metadata["task"] == "ptycho live"
    assert f"inferred {n} of {n}" in widget.counter_label.text()


def test_stop_ends_the_stream(make_napari_viewer, qtbot, tiny_model, notifications):
    viewer = make_napari_viewer()
    widget = dock(viewer, "PtychoNN live")
    widget.model_edit.setText(str(tiny_model))
    widget.rate_spin.setValue(20)  # built-in demo scan, slow detector
    widget.device_combo.setCurrentText("cpu")
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.counters.get("inferred", 0) > 0, timeout=30_000)
    widget.runner.cancel()
    assert wait_done(qtbot, widget.runner) == "cancelled"
    assert widget.start_button.isEnabled()


def test_missing_model_is_a_notification(make_napari_viewer, qtbot, monkeypatch, notifications):
    from napari_tomoml._widgets import ptycho

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    viewer = make_napari_viewer()
    widget = dock(viewer, "PtychoNN live")
    assert widget.model_edit.text() == "ptychonn-sim"  # the bundled model is the default
    widget.model_edit.setText("")
    assert widget.start() is None
    assert "model" in shown[0]
    widget.model_edit.setText("/nonexistent/pnn.safetensors")
    widget.start()
    assert "nonexistent" in shown[1] and not widget.runner.running
    assert ptycho.LAYER not in viewer.layers
