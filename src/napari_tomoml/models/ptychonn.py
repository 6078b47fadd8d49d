"""PtychoNN: a CNN from one far-field diffraction pattern to the object's amplitude and phase.

As published (Cherukara et al., "AI-enabled high-resolution scanning coherent diffraction
imaging", Appl. Phys. Lett. 117, 044103 (2020); the PyTorch version of github.com/mcherukara/
PtychoNN): a shared encoder of three blocks [conv3x3-ReLU, conv3x3-ReLU, maxpool 2] with
``nconv``, 2·nconv, 4·nconv channels (32/64/128), and two decoders of three blocks [conv3x3-ReLU
x2, bilinear upsample 2] back to full size, ending in conv3x3 + sigmoid (amplitude) and conv3x3 +
tanh·π (phase). Fully convolutional, so one set of weights runs on any size divisible by 8.

Two additions. A model file is self-contained: the input is photon counts and the network takes
``log1p(max(I, 0)) * input_scale`` first (``input_scale`` is a stored buffer set from the training
data, so the same preprocessing runs in PyTorch and in the ONNX export). Convolutions start from
He (Kaiming) initialisation rather than torch's default, which trains from the first steps.

``phase_only=True`` is the variant with the phase decoder alone (half the decoder cost).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _block(c_in: int, c_out: int, norm: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers += [nn.Conv2d(c, c_out, 3, padding=1)] + ([nn.BatchNorm2d(c_out)] if norm else []) + [nn.ReLU(inplace=True)]
    return layers


def _decoder(nconv: int, activation: nn.Module, norm: bool) -> nn.Sequential:
    up = lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    return nn.Sequential(
        *_block(nconv * 4, nconv * 4, norm), up(),
        *_block(nconv * 4, nconv * 2, norm), up(),
        *_block(nconv * 2, nconv * 2, norm), up(),
        nn.Conv2d(nconv * 2, 1, 3, padding=1), activation,
    )


class _ScaledTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * math.pi


class PtychoNN(nn.Module):
    """The published PtychoNN (amplitude + phase), or its phase-only variant.

    ``forward(patterns)``: (B, 1, H, W) photon counts, H and W divisible by 8 → (B, 2, H, W)
    with channel 0 the phase (radians, in (-π, π)) and channel 1 the amplitude (in (0, 1)); the
    phase-only variant returns (B, 1, H, W).

    >>> net = PtychoNN()
    >>> net(torch.rand(2, 1, 64, 64)).shape
    torch.Size([2, 2, 64, 64])
    >>> PtychoNN(phase_only=True)(torch.rand(1, 1, 32, 32)).shape
    torch.Size([1, 1, 32, 32])
    """

    def __init__(self, nconv: int = 32, phase_only: bool = False, batchnorm: bool = False):
        super().__init__()
        self.config = {"nconv": int(nconv), "phase_only": bool(phase_only), "batchnorm": bool(batchnorm)}
        norm = bool(batchnorm)
        self.encoder = nn.Sequential(
            *_block(1, nconv, norm), nn.MaxPool2d(2),
            *_block(nconv, nconv * 2, norm), nn.MaxPool2d(2),
            *_block(nconv * 2, nconv * 4, norm), nn.MaxPool2d(2),
        )
        self.phase_decoder = _decoder(nconv, _ScaledTanh(), norm)
        self.amplitude_decoder = None if phase_only else _decoder(nconv, nn.Sigmoid(), norm)
        self.register_buffer("input_scale", torch.ones(()))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He init keeps the signal alive through 21 layers; torch's default shrinks it ~100x
                # and the first hundreds of steps then learn only a constant output
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def phase_only(self) -> bool:
        return self.amplitude_decoder is None

    @property
    def out_channels(self) -> int:
        return 1 if self.phase_only else 2

    def forward(self, patterns: torch.Tensor) -> torch.Tensor:
        x = torch.log1p(torch.clamp(patterns, min=0.0)) * self.input_scale
        z = self.encoder(x)
        phase = self.phase_decoder(z)
        if self.amplitude_decoder is None:
            return phase
        return torch.cat([phase, self.amplitude_decoder(z)], dim=1)


def flops_per_frame(model: PtychoNN, size: int) -> float:
    """Floating-point operations (2 per multiply-add) of one ``size``² frame through the convolutions.

    >>> round(flops_per_frame(PtychoNN(), 64) / 1e9, 2)
    0.8
    """
    def count(seq: nn.Module, s: int) -> tuple[float, int]:
        total = 0.0
        for module in seq.modules():
            if isinstance(module, nn.MaxPool2d):
                s //= 2
            elif isinstance(module, nn.Upsample):
                s *= 2
            elif isinstance(module, nn.Conv2d):
                total += 2 * s * s * module.in_channels * module.out_channels * 9
        return total, s

    total, bottom = count(model.encoder, size)
    for decoder in (model.phase_decoder, model.amplitude_decoder):
        if decoder is not None:
            total += count(decoder, bottom)[0]
    return total
