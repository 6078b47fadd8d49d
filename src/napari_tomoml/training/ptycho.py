"""Training PtychoNN on the shared Trainer: L1 loss, Adam, cyclic learning rate (as published).

The published recipe: L1 loss on amplitude and phase (summed), Adam at 1e-3, batch 64, and a
``triangular2`` cyclic learning rate between lr/10 and lr with a half-cycle of 6 epochs
(``torch.optim.lr_scheduler.CyclicLR``), stepped once per optimisation step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..models.ptychonn import PtychoNN


class PtychoNNTask:
    """The PtychoNN :class:`~napari_tomoml.training.trainer.TrainingTask`.

    Targets are (B, C, H, W) with the phase in channel 0 and the amplitude in channel 1 (the
    network's own output layout), so the Trainer's validation SSIM/PSNR are those of the phase.

    >>> task = PtychoNNTask(PtychoNN(), lr=1e-3, half_cycle=60)
    >>> task.monitored, list(task.optimizers)
    ('ptychonn', ['ptychonn'])
    """

    monitored = "ptychonn"

    def __init__(self, net: PtychoNN, *, lr: float = 1e-3, half_cycle: int = 600):
        self.net = net
        self.modules: dict[str, nn.Module] = {"ptychonn": net}
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        self.optimizers: dict[str, torch.optim.Optimizer] = {"ptychonn": opt}
        self.lr, self.half_cycle = float(lr), max(1, int(half_cycle))

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

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator, step: int
    ) -> dict[str, float]:
        opt = self.optimizers["ptychonn"]
        for group in opt.param_groups:
            group["lr"] = self.learning_rate(step)
        x, y = next_batch()
        pred = self.net(x)
        per_channel = (pred - y).abs().mean(dim=(0, 2, 3))
        loss = per_channel.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses = {"l1": loss.item(), "phase_l1": per_channel[0].item()}
        if len(per_channel) > 1:
            losses["amplitude_l1"] = per_channel[1].item()
        return losses
