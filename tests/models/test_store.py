import json

import pytest
import torch

from napari_tomoml.errors import ModelFileError, OutputExistsError
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
    with pytest.raises(ModelFileError, match="does not match its card"):
        load_model(path)
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    del card["weights_sha256"]  # a card from before hashes were recorded
    card_path.write_text(json.dumps(card))
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


def _edit_card(path, **changes):
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": "2"}, "format_version must be a whole number"),
        ({"architecture": ["tomogan"]}, "architecture must be a name"),
        ({"config": [3]}, "config must be an object"),
        ({"normalization": None}, "normalization must be an object"),
        ({"normalization": {"kind": "percentile", "percentiles": [0.5, 99.5], "range": [0, 0]}}, "range must be two different"),
        ({"normalization": {"kind": "percentile", "percentiles": [0.5, 150], "range": [0, 1]}}, "between 0 and 100"),
        ({"normalization": {"kind": "percentile", "percentiles": [99.5, 0.5], "range": [0, 1]}}, "must be increasing"),
        ({"normalization": {"kind": "affine", "offset": 0, "scale": 0}}, "non-zero number scale"),
        ({"normalization": {"kind": "magic"}}, "kind 'magic' is unknown"),
    ],
)
def test_card_fields_of_the_wrong_type_or_value_are_refused(saved, changes, message):
    _, path = saved
    _edit_card(path, **changes)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def _rewrite_weights(path, change):
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    key = sorted(state)[0]
    state[key] = change(state[key])
    save_file(state, str(path))
    _edit_card(path, weights_sha256=None)  # as a hand-made or older card


@pytest.mark.parametrize(
    ("change", "message"),
    [(lambda t: t * float("nan"), "NaN/inf"), (lambda t: t.to(torch.int32), "torch.int32")],
)
def test_nan_or_integer_weights_are_refused(saved, change, message):
    _, path = saved
    _rewrite_weights(path, change)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_saving_nan_weights_is_refused_and_nothing_is_written(tmp_path):
    net = TomoGAN(depth=1)
    with torch.no_grad():
        net.out.bias.fill_(float("nan"))
    with pytest.raises(ModelFileError, match="NaN/inf"):
        save_model(net, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl"])
def test_pickle_model_paths_are_refused_by_name(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not loaded")
    with pytest.raises(ModelFileError, match="pickles.*refused; use a safetensors"):
        load_model(path)


def test_a_card_and_weights_from_different_saves_are_refused(tmp_path):
    """A save killed between renaming the weights and the card leaves new weights, old card."""
    first = save_model(TomoGAN(depth=1), tmp_path / "m")
    old_card = first.with_suffix(".json").read_text()
    torch.manual_seed(1)
    save_model(TomoGAN(depth=1), tmp_path / "m")
    first.with_suffix(".json").write_text(old_card)
    with pytest.raises(ModelFileError, match="does not match its card"):
        load_model(first)


def test_save_model_refuses_existing_files_without_overwrite(saved):
    net, path = saved
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    with pytest.raises(OutputExistsError):
        save_model(net, path.with_suffix(""), overwrite=False)
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before
    path.unlink()  # only the card left: still refused, the card is the user's too
    with pytest.raises(OutputExistsError, match="json"):
        save_model(net, path.with_suffix(""), overwrite=False)
