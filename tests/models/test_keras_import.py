import h5py
import numpy as np
import pytest
import torch

from napari_tomoml.errors import ModelFileError
from napari_tomoml.models.keras_import import import_tomogan_keras, tomogan_from_keras
from napari_tomoml.models.store import load_model

from .keras_reference import keras_forward


@pytest.fixture
def published_h5(shared_data):
    path = shared_data / "tomogan_published" / "TomoGAN.h5"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_imported_weights_reproduce_independent_numpy_forward(published_h5, rng):
    image = rng.uniform(0, 255, size=(1, 24, 32, 1))
    expected = keras_forward(published_h5, image)[0, :, :, 0]
    net = tomogan_from_keras(published_h5)
    with torch.no_grad():
        got = net(torch.from_numpy(image.transpose(0, 3, 1, 2).astype(np.float32)))[0, 0].numpy()
    assert net.depth == 1 and net.upsample == "nearest"
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())


def test_import_writes_loadable_model_with_0_255_card(published_h5, tmp_path):
    path = import_tomogan_keras(published_h5, tmp_path / "aps")
    loaded = load_model(path)
    assert loaded.card["config"] == {"depth": 1, "upsample": "nearest"}
    assert loaded.normalization["range"] == [0.0, 255.0]
    assert sum(p.numel() for p in loaded.module.parameters()) == 694_897


def test_import_rejects_files_that_are_not_the_model(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelFileError, match="not a readable HDF5"):
        import_tomogan_keras(garbage, tmp_path / "out")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ModelFileError, match="not a saved Keras model"):
        import_tomogan_keras(plain, tmp_path / "out")
    with pytest.raises(ModelFileError, match="does not exist"):
        import_tomogan_keras(tmp_path / "missing.h5", tmp_path / "out")


def test_load_model_imports_a_keras_file_once_into_the_cache(published_h5, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = load_model(published_h5)
    (cached,) = (tmp_path / "napari-tomoml" / "models").glob("TomoGAN-*.safetensors")
    assert first.source == str(cached)
    mtime = cached.stat().st_mtime_ns
    assert load_model(published_h5).card == first.card
    assert cached.stat().st_mtime_ns == mtime  # reused, not converted again


def test_keras_cache_is_keyed_by_content_not_name_or_date(published_h5, tmp_path, monkeypatch):
    """Regression: b/TomoGAN.h5 (older, other weights) after a/TomoGAN.h5 used a's weights."""
    import os
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = shutil.copy(published_h5, tmp_path / "a"), shutil.copy(published_h5, tmp_path / "b")
    with h5py.File(b, "r+") as f:
        f["model_weights/conv2d_15/conv2d_15/bias:0"][...] += 7.0
    os.utime(b, (1_000_000, 1_000_000))  # b is older than a
    from_a = load_model(a)
    from_b = load_model(b)
    assert from_a.source != from_b.source
    assert torch.allclose(from_b.module.out.bias, from_a.module.out.bias + 7.0)
