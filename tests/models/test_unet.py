"""The U-Net: shapes, configuration, model files."""

import numpy as np
import pytest
import torch

from napari_tomoml.models.store import load_model, save_model
from napari_tomoml.models.unet import UNet


@pytest.mark.parametrize("depth, width, classes, size", [(1, 4, 2, (9, 13)), (3, 8, 3, (50, 37)), (4, 4, 5, (16, 16))])
def test_any_size_in_logits_out(depth, width, classes, size):
    net = UNet(classes=classes, depth=depth, width=width).eval()
    out = net(torch.rand(2, 1, *size))
    assert out.shape == (2, classes, *size)
    assert net.size_multiple == 2**depth


def test_translation_by_the_pooling_multiple_commutes():
    # what the seamless tiler relies on: shifting the input by 8 px shifts the output by 8 px
    torch.manual_seed(0)
    net = UNet(classes=2, depth=3, width=4).eval()
    x = torch.rand(1, 1, 128, 128)
    a = net(x)[..., 8 + 40 : 8 + 88, 8 + 40 : 8 + 88]
    b = net(x[..., 8:, 8:])[..., 40:88, 40:88]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bad_configurations():
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)
    with pytest.raises(ValueError, match="classes >= 2"):
        UNet(classes=1)
    with pytest.raises(ValueError, match="expects"):
        UNet(in_channels=1)(torch.zeros(1, 3, 16, 16))


def test_model_file_round_trip(tmp_path):
    torch.manual_seed(0)
    net = UNet(classes=3, depth=2, width=4).eval()
    path = save_model(net, tmp_path / "seg", normalization={"kind": "affine", "offset": 0.0, "scale": 1.0})
    loaded = load_model(path)
    assert isinstance(loaded.module, UNet) and loaded.card["architecture"] == "unet"
    assert loaded.module.config == {"in_channels": 1, "classes": 3, "depth": 2, "width": 4}
    x = torch.rand(1, 1, 24, 24)
    np.testing.assert_array_equal(net(x).detach().numpy(), loaded.module(x).detach().numpy())
