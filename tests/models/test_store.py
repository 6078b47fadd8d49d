import json

import pytest
import torch

from napari_tomoml.errors import ModelFileError
from napari_tomoml.models.store import LoadedModel, bundled_models, load_model, save_model
from napari_tomoml.models.tomogan import TomoGAN


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = TomoGAN(depth=3, upsample="nearest")
    path = save_model(net, tmp_path / "model", metrics={"psnr": 30.0}, training={"steps": 5})
    return net, path


def test_round_trip_keeps_weights_and_card(saved):
    net, path = saved
    loaded = load_model(path)
    assert loaded.card["config"] == {"depth": 3, "upsample": "nearest"}
    assert loaded.card["metrics"] == {"psnr": 30.0}
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)
    # the card and the bare stem name the same model
    assert load_model(path.with_suffix(".json")).source == load_model(path.with_suffix("")).source


def test_loaded_models_and_modules_pass_through():
    net = TomoGAN(depth=1)
    loaded = load_model(net)
    assert isinstance(loaded, LoadedModel) and loaded.module is net
    assert load_model(loaded) is loaded


def test_missing_file_names_the_path_and_bundled_models(tmp_path):
    with pytest.raises(ModelFileError, match="neither an existing model file nor a bundled model"):
        load_model(tmp_path / "nothing.safetensors")


def test_garbage_bytes_are_not_a_safetensors_file(saved):
    _, path = saved
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_model(path)


def test_missing_or_foreign_card(saved):
    _, path = saved
    card = path.with_suffix(".json")
    card.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ModelFileError, match="not a napari-tomoml model card"):
        load_model(path)
    card.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(path)
    card.unlink()
    with pytest.raises(ModelFileError, match="card .* is missing"):
        load_model(path)


def test_wrong_architecture_or_shape_mismatch_names_the_tensor(saved):
    _, path = saved
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["architecture"] = "resnet"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="architecture 'resnet' is unknown"):
        load_model(path)
    card["architecture"], card["config"]["depth"] = "tomogan", 5  # file holds depth-3 weights
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"tensor stem\.weight has shape \(8, 3, 1, 1\)"):
        load_model(path)


def test_bundled_model_loads_by_name():
    if "tomogan-lowdose" not in bundled_models():
        pytest.skip("bundled weights not trained yet")
    loaded = load_model("tomogan-lowdose")
    assert loaded.card["architecture"] == "tomogan" and loaded.card["metrics"]
