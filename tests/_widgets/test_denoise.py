"""Denoise widget: a volume layer and a model file → a denoised layer with provenance."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari


@pytest.fixture
def tiny_model(tmp_path):
    import torch

    from napari_tomoml.models.store import save_model
    from napari_tomoml.models.tomogan import TomoGAN

    torch.manual_seed(0)
    return save_model(TomoGAN(depth=1), tmp_path / "tiny-tomogan", description="test model")


def test_denoise_volume_layer(make_napari_viewer, qtbot, tiny_model, rng, notifications):
    viewer = make_napari_viewer()
    volume = rng.random((3, 24, 24)).astype(np.float32)
    viewer.add_image(volume, name="rec", translate=(5, 0, 0))
    widget = dock(viewer, "Denoise")
    widget.layer_combo.set_layer("rec")
    widget.set_model(tiny_model)
    widget.device_combo.setCurrentText("cpu")
    widget.denoise_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    out = viewer.layers["rec denoised"]
    assert out.data.shape == (3, 24, 24) and out.data.dtype == np.float32
    assert np.isfinite(out.data).all()
    assert out.metadata["task"] == "denoise"
    assert out.metadata["source"] == "rec"
    assert out.metadata["model"] == str(tiny_model)
    assert out.metadata["card"]["description"] == "test model"
    assert tuple(out.translate) == (5, 0, 0)


def test_missing_model_file_is_a_notification(make_napari_viewer, qtbot, tmp_path, rng, notifications):
    viewer = make_napari_viewer()
    viewer.add_image(rng.random((2, 16, 16)).astype(np.float32), name="rec")
    widget = dock(viewer, "Denoise")
    widget.set_model(tmp_path / "nope.safetensors")
    widget.denoise()
    assert wait_done(qtbot, widget.runner) == "error"
    assert "nope" in notifications[0]
    assert [layer.name for layer in viewer.layers] == ["rec"]


# shared_data comes first: it skips before napari's viewer fixture starts (whose teardown fails on a skip)
def test_keras_choice_imports_into_cache(shared_data, make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                         rng, notifications):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    keras = shared_data / "tomogan_published" / "TomoGAN.h5"
    viewer = make_napari_viewer()
    viewer.add_image(rng.random((1, 16, 16)).astype(np.float32), name="rec")
    widget = dock(viewer, "Denoise")
    widget.set_model(keras)
    assert widget.model_spec() == str(keras)
    widget.device_combo.setCurrentText("cpu")
    widget.denoise()
    assert wait_done(qtbot, widget.runner, timeout=120_000) == "ok", notifications
    assert (tmp_path / "cache" / "napari-tomoml" / "models" / "TomoGAN-imported.safetensors").is_file()
    assert viewer.layers["rec denoised"].data.shape == (1, 16, 16)
