"""Training PtychoNN on the shared Trainer: L1 loss, Adam, cyclic learning rate (as published).

The published recipe: L1 loss on amplitude and phase (summed), Adam at 1e-3, batch 64, and a
``triangular2`` cyclic learning rate between lr/10 and lr with a half-cycle of 6 epochs
(``torch.optim.lr_scheduler.CyclicLR``), stepped once per optimisation step. ``schedule="cosine"``
leaves the rate to the Trainer's cosine decay instead (better when every batch is fresh data).

``weight`` (an (h, h) map, e.g. :func:`~napari_tomoml.ptycho.stitching.illumination`) restricts
the loss to where the probe lights the object: outside it a diffraction pattern says nothing
about the object, and fitting those pixels only teaches the network the labels' average.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..models.ptychonn import PtychoNN
from .metrics import psnr


class PtychoNNTask:
    """The PtychoNN :class:`~napari_tomoml.training.trainer.TrainingTask`.

    Targets are (B, C, H, W) with the phase in channel 0 and the amplitude in channel 1 (the
    network's own output layout), so the Trainer's validation SSIM/PSNR are those of the phase.
    With a ``weight`` map, validation reports the weighted L1 (``val_loss``), the phase's mean
    absolute error (``phase_mae``, rad) and PSNR inside the lit area instead.

    >>> task = PtychoNNTask(PtychoNN(), lr=1e-3, half_cycle=60)
    >>> task.monitored, list(task.optimizers)
    ('ptychonn', ['ptychonn'])
    """

    monitored = "ptychonn"

    def __init__(self, net: PtychoNN, *, lr: float = 1e-3, half_cycle: int = 600, schedule: str = "cyclic",
                 weight: np.ndarray | None = None):
        if schedule not in ("cyclic", "cosine"):
            raise InputError(f"schedule must be 'cyclic' or 'cosine', got {schedule!r}")
        self.net = net
        self.modules: dict[str, nn.Module] = {"ptychonn": net}
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        self.optimizers: dict[str, torch.optim.Optimizer] = {"ptychonn": opt}
        self.lr, self.half_cycle, self.schedule = float(lr), max(1, int(half_cycle)), schedule
        self.weight = None
        if weight is not None:
            w = np.asarray(weight, np.float32)
            self.weight = w / w.mean()  # mean 1: the loss keeps the scale of the unweighted one
            self._weight_t = torch.from_numpy(self.weight)
            self.validation_scores = self._weighted_scores

    def learning_rate(self, step: int) -> float:
        """The triangular2 cyclic rate at ``step`` (same as torch's CyclicLR, but a pure function of the
        step, so a resumed run continues the same schedule).

        >>> t = PtychoNNTask(PtychoNN(nconv=2), lr=1.0, half_cycle=10)
        >>> [round(t.learning_rate(s), 3) for s in (0, 10, 20, 30)]
        [0.1, 1.0, 0.1, 0.55]
        """
        cycle = step // (2 * self.half_cycle)
        x = abs(step / self.half_cycle - 2 * cycle - 1)
        base = self.lr / 10
        return base + (self.lr - base) * max(0.0, 1 - x) / (2**cycle)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _weighted_scores(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        err = np.abs(pred - target) * self.weight
        lit = self.weight > 0.5 * self.weight.max()
        return {"val_loss": float(err.mean(axis=(0, 2, 3)).sum()), "phase_mae": float(err[:, 0].mean()),
                "psnr": psnr(pred[:, 0, lit], target[:, 0, lit])}

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator, step: int
    ) -> dict[str, float]:
        opt = self.optimizers["ptychonn"]
        if self.schedule == "cyclic":
            for group in opt.param_groups:
                group["lr"] = self.learning_rate(step)
        x, y = next_batch()
        pred = self.net(x)
        err = (pred - y).abs()
        if self.weight is not None:
            err = err * self._weight_t.to(err.device)
        per_channel = err.mean(dim=(0, 2, 3))
        loss = per_channel.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses = {"l1": loss.item(), "phase_l1": per_channel[0].item()}
        if len(per_channel) > 1:
            losses["amplitude_l1"] = per_channel[1].item()
        return losses
