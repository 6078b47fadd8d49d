"""A light U-Net for patch segmentation (Ronneberger et al., MICCAI 2015, arXiv:1505.04597).

Each level is two 3x3 convolutions with batch normalisation and ReLU; the encoder halves the
size with 2x2 max-pooling, the decoder doubles it with bilinear upsampling and concatenates the
encoder's skip connection; a 1x1 convolution gives one logit per class. ``depth`` (pooling
steps) and ``width`` (channels of the first level, doubled per level) set the size: the default
(depth 3, width 16) has 0.47 M parameters (1.9 MB) and trains on a laptop CPU in minutes.

The network is translation-equivariant for shifts by multiples of ``2**depth`` and each output
pixel sees at most :attr:`UNet.receptive_field` input pixels on each side, which is what lets the
tiler (:mod:`napari_tomoml.inference.tiler`) reproduce a whole-image prediction tile by tile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .tomogan import pad_to_multiple


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: (batch, in_channels, H, W) image -> (batch, classes, H, W) logits.

    Any height and width work: the input is reflect-padded to a multiple of ``2**depth`` and the
    output cropped back. Binary segmentation is ``classes=2`` (background, foreground).

    >>> net = UNet(classes=3, depth=2, width=8)
    >>> net(torch.zeros(1, 1, 50, 37)).shape
    torch.Size([1, 3, 50, 37])
    >>> UNet(depth=3).receptive_field, UNet(depth=3).size_multiple
    (65, 8)
    """

    def __init__(self, in_channels: int = 1, classes: int = 2, depth: int = 3, width: int = 16):
        super().__init__()
        if not (1 <= depth <= 6):
            raise ValueError(f"U-Net depth must be 1..6, got {depth}")
        if width < 1 or classes < 2 or in_channels < 1:
            raise ValueError(f"U-Net needs width >= 1, classes >= 2, in_channels >= 1 (got {width}, {classes}, {in_channels})")
        self.in_channels, self.classes, self.depth, self.width = in_channels, classes, depth, width
        widths = [width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList([_block(in_channels, widths[0])] +
                                     [_block(widths[i], widths[i + 1]) for i in range(depth - 1)])
        self.bottom = _block(widths[depth - 1], widths[depth])
        self.decoder = nn.ModuleList([_block(widths[i] + widths[i + 1], widths[i]) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], classes, 1)

    @property
    def config(self) -> dict:
        """Constructor arguments, as stored in a model card."""
        return {"in_channels": self.in_channels, "classes": self.classes, "depth": self.depth, "width": self.width}

    @property
    def size_multiple(self) -> int:
        """Height/width granularity: tiles must start on (and span) multiples of it to match a whole pass."""
        return 2**self.depth

    @property
    def bytes_per_pixel(self) -> int:
        """Working memory of a forward pass per input pixel (about ten full-size float32 feature maps)."""
        return 4 * 10 * self.width

    @property
    def receptive_field(self) -> int:
        """Pixels on each side of an output pixel that can change it (an upper bound).

        Per level l (scale 2**l): two 3x3 convolutions in the encoder and the decoder (2 * 2**l
        each), the 2x2 pool (2**l) and the bilinear upsampling into it (2**(l+1)); the bottom's
        two convolutions add 2 * 2**depth.
        """
        levels = 2**self.depth - 1
        return 2 * levels + levels + 2 * levels + 2 * levels + 2 * 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet(in_channels={self.in_channels}) expects (batch, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = self.bottom(F.max_pool2d(x, 2))
        for block, skip in zip(reversed(self.decoder), reversed(skips)):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, x], 1))
        return self.head(x)[..., :h, :w]
