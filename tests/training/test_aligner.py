"""A tiny training run of the learned aligner lowers its loss."""

from __future__ import annotations

import numpy as np
import torch

from napari_tomoml.models.aligner import MomentAligner, observable, profiles
from napari_tomoml.progress import run_to_end
from napari_tomoml.training.aligner import AlignerData, train_aligner_steps, validation_stacks


def _loss(model, data, samples):
    theta = torch.from_numpy(data.theta)
    total = 0.0
    with torch.no_grad():
        for stack, shifts, margin in samples:
            pred = torch.stack([torch.zeros(len(stack), dtype=torch.float64),
                                model(profiles(stack, margin)[1]).double()], dim=1)
            total += float(((observable(pred, theta) - observable(torch.from_numpy(shifts), theta))[:, 1] ** 2).mean())
    return total / len(samples)


def test_tiny_training_lowers_the_loss():
    torch.manual_seed(0)
    data = AlignerData(n=32, rows=8, n_angles=60, n_phantoms=2, margin=4, seed=1)
    rng = np.random.default_rng(99)
    held_out = [data.sample(rng) for _ in range(8)]
    model = MomentAligner(channels=8, layers=4)
    before = _loss(model, data, held_out)
    val = validation_stacks(1, n=32, rows=16, n_angles=60)
    model, record = run_to_end(train_aligner_steps(model, steps=40, batch=2, lr=3e-3, val_every=20, data=data,
                                                   validation=val, seed=0))
    after = _loss(model, data, held_out)
    assert after < 0.9 * before, (before, after)
    assert [r["step"] for r in record["curve"]] == [20, 40]
    assert record["best_val_rms_px"] < 0.3
