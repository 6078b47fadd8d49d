"""Denoise widget: a volume layer and a model file → a denoised layer with provenance."""

from __future__ import annotations

import json

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
    out = viewer.layers["rec tiny-tomogan"]  # named by the model that made it
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
    imported = sorted((tmp_path / "cache" / "napari-tomoml" / "models").glob("TomoGAN*.safetensors"))
    assert len(imported) == 1
    assert viewer.layers["rec TomoGAN"].data.shape == (1, 16, 16)
    widget.refresh_models()
    assert f"{imported[0].stem} (imported)" in widget.models  # listed from now on


@pytest.mark.slow
def test_denoised_volume_is_in_view_and_trained_models_are_listed(
    make_napari_viewer, qtbot, tiny_model, rng, notifications, tmp_path, monkeypatch
):
    from napari_tomoml._widgets.denoise import remember_model

    from .conftest import in_view

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    remember_model(tiny_model)
    viewer = make_napari_viewer()
    viewer.add_image(rng.random((40, 8, 24)).astype(np.float32), name="proj", metadata={"kind": "projections"})
    viewer.add_image(rng.random((3, 24, 24)).astype(np.float32), name="rec fbp",
                     metadata={"task": "reconstruct", "kind": "volume"})
    viewer.add_image(rng.random((24, 24)).astype(np.float32), name="reconstruction preview",
                     metadata={"task": "preview"})
    viewer.dims.set_point(0, 30)  # browsing the projections
    widget = dock(viewer, "Denoise")
    assert widget.layer_combo.currentText() == "rec fbp"  # not the newer one-slice preview
    assert "tiny-tomogan (trained)" in widget.models
    widget.model_combo.setCurrentText("tiny-tomogan (trained)")
    assert "test model" in widget.card_label.text()
    widget.device_combo.setCurrentText("cpu")
    widget.denoise_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    out = viewer.layers["rec fbp tiny-tomogan"]
    in_view(viewer, out)
    assert not viewer.layers["rec fbp"].visible
    assert viewer.dims.axis_labels[-3:] == ("z", "y", "x")


def test_only_denoisers_are_listed(tmp_path, monkeypatch):
    import torch

    from napari_tomoml._widgets.denoise import known_models, remember_model
    from napari_tomoml.models.store import save_model
    from napari_tomoml.models.tomogan import TomoGAN

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    denoiser = save_model(TomoGAN(depth=1), tmp_path / "mine")
    remember_model(denoiser)
    models = known_models()
    assert models["mine (trained)"] == str(denoiser)
    assert "tomogan-lowdose" in models
    from napari_tomoml.models.store import WEIGHTS_DIR, bundled_models

    for name in bundled_models():  # bundled models of other tasks (aligners…) stay out
        card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert (name in models) == (card["architecture"] == "tomogan")
