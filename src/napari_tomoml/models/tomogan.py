"""The TomoGAN generator and critic (Liu et al., J. Opt. Soc. Am. A 37, 422 (2020); arXiv:1902.07582).

The generator is the published U-Net, layer for layer: the order, widths and skip connections
match the ``model_config`` stored in the authors' Keras file (``TomoGAN.h5``), so its weights
import one to one (:mod:`napari_tomoml.models.keras_import`)::

    d slices -> 1x1 conv 8 -> [32, 32] -> pool -> [64, 64] -> pool -> [128, 128] -> pool -> 128
             -> up, concat(skip 128) -> [64, 64] -> up, concat(skip 64) -> [32, 32]
             -> up, concat(skip 32) -> [32, 32] -> 1x1 conv 16 (ReLU) -> 1x1 conv 1 (linear)

All 3x3 convolutions use 'same' padding and ReLU; there is no batch normalisation. The input is
``d`` adjacent slices as channels (d = 1, 3, 5 or 7); the output is the denoised middle slice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEPTHS = (1, 3, 5, 7)
UPSAMPLE_MODES = ("bilinear", "nearest")
# three 2x max-pools: height and width must divide by 8 inside the network
SIZE_MULTIPLE = 8


def _conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


class TomoGAN(nn.Module):
    """TomoGAN generator: ``d`` adjacent noisy slices in, the clean middle slice out.

    ``upsample`` is ``"bilinear"`` (the paper) or ``"nearest"`` (what the published Keras file
    actually does: its UpSampling2D layers have no interpolation setting, i.e. nearest).
    Any height and width work: the input is reflect-padded to a multiple of 8 and cropped back.

    >>> net = TomoGAN(depth=3)
    >>> net(torch.zeros(2, 3, 50, 37)).shape
    torch.Size([2, 1, 50, 37])
    """

    def __init__(self, depth: int = 3, upsample: str = "bilinear"):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"TomoGAN depth must be one of {DEPTHS}, got {depth}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"TomoGAN upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.depth = depth
        self.upsample = upsample
        self.stem = _conv(depth, 8, 1)
        self.enc1 = nn.ModuleList([_conv(8, 32), _conv(32, 32)])
        self.enc2 = nn.ModuleList([_conv(32, 64), _conv(64, 64)])
        self.enc3 = nn.ModuleList([_conv(64, 128), _conv(128, 128)])
        self.bottom = _conv(128, 128)
        # decoder inputs are concat(skip, upsampled), in that order, as in the Keras graph
        self.dec3 = nn.ModuleList([_conv(128 + 128, 64), _conv(64, 64)])
        self.dec2 = nn.ModuleList([_conv(64 + 64, 32), _conv(32, 32)])
        self.dec1 = nn.ModuleList([_conv(32 + 32, 32), _conv(32, 32)])
        self.head = _conv(32, 16, 1)
        self.out = _conv(16, 1, 1)

    @property
    def config(self) -> dict:
        """Constructor arguments, as stored in a model card."""
        return {"depth": self.depth, "upsample": self.upsample}

    # for the seamless tiler: shifts by multiples of 8 commute with the network, and an output
    # pixel sees at most 57 px on each side: 3x3 convs 2*(1+2+4) + 8 (bottom) + 2*(4+2+1),
    # pools 1+2+4, upsamplings 8+4+2
    size_multiple = SIZE_MULTIPLE
    receptive_field = 57

    @staticmethod
    def _block(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for conv in convs:
            x = F.relu(conv(x))
        return x

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.depth:
            raise ValueError(f"TomoGAN(depth={self.depth}) expects (batch, {self.depth}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, SIZE_MULTIPLE)
        x = F.relu(self.stem(x))
        s1 = self._block(self.enc1, x)
        s2 = self._block(self.enc2, F.max_pool2d(s1, 2))
        s3 = self._block(self.enc3, F.max_pool2d(s2, 2))
        x = F.relu(self.bottom(F.max_pool2d(s3, 2)))
        x = self._block(self.dec3, torch.cat([s3, self._up(x)], 1))
        x = self._block(self.dec2, torch.cat([s2, self._up(x)], 1))
        x = self._block(self.dec1, torch.cat([s1, self._up(x)], 1))
        x = self.out(F.relu(self.head(x)))
        return x[..., :h, :w]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the last two axes at the bottom/right up to a multiple; reflect where the image allows.

    >>> pad_to_multiple(torch.zeros(1, 1, 5, 8), 8).shape
    torch.Size([1, 1, 8, 8])
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    # reflect needs the pad to be smaller than the side; tiny images fall back to edge copies
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class TomoGANCritic(nn.Module):
    """TomoGAN's discriminator, used as a Wasserstein critic: one unbounded score per image.

    Published layout: 3x3 convs 64, 64/2, 128, 128/2, 128, 4/2 (ReLU), flatten, dense 64 (ReLU),
    dense 1. No batch normalisation, which a WGAN gradient penalty requires. The dense layer
    fixes the input size: ``crop`` (a multiple of 8) is the training crop side.

    >>> TomoGANCritic(crop=32)(torch.zeros(4, 1, 32, 32)).shape
    torch.Size([4])
    """

    def __init__(self, crop: int = 64):
        super().__init__()
        if crop % SIZE_MULTIPLE:
            raise ValueError(f"critic crop size must be a multiple of {SIZE_MULTIPLE}, got {crop}")
        self.crop = crop
        widths = [(1, 64, 1), (64, 64, 2), (64, 128, 1), (128, 128, 2), (128, 128, 1), (128, 4, 2)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=s, padding=1) for i, o, s in widths)
        self.dense = nn.Linear(4 * (crop // 8) ** 2, 64)
        self.score = nn.Linear(64, 1)

    @property
    def config(self) -> dict:
        return {"crop": self.crop}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.score(F.relu(self.dense(x.flatten(1)))).squeeze(1)
