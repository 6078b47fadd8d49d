"""VGG19 feature extractor for TomoGAN's perceptual loss, without torchvision.

The layers and their indices match ``torchvision.models.vgg19().features``, so a state dict saved
from torchvision (keys ``features.0.weight``, ``features.0.bias``, ...) loads unchanged. No
weights are bundled or downloaded: the user supplies a file (``.safetensors`` or a tensor-only
``.pth`` read with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ModelFileError

# torchvision's configuration "E" (VGG19): channel counts, "M" = 2x2 max-pool
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> dict[str, int]:
    """Map 'relu3_4', 'pool5', ... to indices of ``features`` (torchvision numbering)."""
    names, block, conv, index = {}, 1, 1, 0
    for item in _VGG19:
        if item == "M":
            names[f"pool{block}"] = index
            block, conv, index = block + 1, 1, index + 1
        else:
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            conv, index = conv + 1, index + 2
    return names


LAYERS = _layer_names()


class VGG19Features(nn.Module):
    """VGG19 ``features`` truncated at ``layer``; takes grayscale images, returns feature maps.

    Input (batch, 1, H, W) with values roughly in [0, 1]; it is copied to 3 channels and
    ImageNet-normalised, as torchvision's weights expect. ``layer`` is a name such as
    ``"relu3_4"``, ``"relu5_4"`` (the last ReLU, close to TomoGAN's choice) or ``"pool5"``.

    >>> VGG19Features("relu2_2")(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 128, 16, 16])
    """

    def __init__(self, layer: str = "relu5_4"):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown VGG19 layer {layer!r}; choose one of {', '.join(LAYERS)}")
        self.layer = layer
        modules: list[nn.Module] = []
        c_in = 3
        for item in _VGG19:
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(c_in, item, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = item
        # keep every layer so torchvision indices stay valid; forward stops at `layer`
        self.features = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        for module in self.features[: LAYERS[self.layer] + 1]:
            x = module(x)
        return x


def load_vgg19(path: str | Path, layer: str = "relu5_4") -> VGG19Features:
    """Build :class:`VGG19Features` and load torchvision-format VGG19 weights from ``path``.

    Accepts ``.safetensors`` or a ``.pth``/``.pt`` state dict of tensors (never unpickles
    objects); keys other than ``features.*`` (e.g. the classifier) are ignored.

    >>> vgg = load_vgg19("vgg19-dcbb9e9d.pth", layer="relu3_4")   # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"VGG19 weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure means the file is not a tensor state dict
        raise ModelFileError(f"{path} is not a readable VGG19 state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise ModelFileError(f"{path} does not hold a state dict of tensors")
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    vgg = VGG19Features(layer)
    expected = vgg.state_dict()
    missing = sorted(set(expected) - set(features))
    if missing:
        raise ModelFileError(f"{path} is not torchvision VGG19 weights: missing {missing[0]} (and {len(missing) - 1} more)")
    for key, tensor in features.items():
        if key in expected and tensor.shape != expected[key].shape:
            raise ModelFileError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, VGG19 needs {tuple(expected[key].shape)}")
    vgg.load_state_dict({k: features[k] for k in expected})
    return vgg.eval()
