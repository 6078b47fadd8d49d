import pytest
import torch
from safetensors.torch import save_file

from napari_tomoml.errors import ModelFileError
from napari_tomoml.models.vgg import LAYERS, VGG19Features, load_vgg19


def test_layer_names_follow_torchvision_indices():
    assert LAYERS["relu1_1"] == 1 and LAYERS["relu3_4"] == 17 and LAYERS["relu5_4"] == 35 and LAYERS["pool5"] == 36


def _torchvision_style_state():
    state = {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file also has the classifier
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_torchvision_format_weights(tmp_path, suffix):
    state = _torchvision_style_state()
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    vgg = load_vgg19(path, layer="relu2_2")
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])
    assert vgg(torch.rand(1, 1, 16, 16)).shape == (1, 128, 8, 8)


def test_rejects_wrong_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_vgg19(tmp_path / "none.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_vgg19(bad)
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(ModelFileError, match="missing"):
        load_vgg19(partial)
