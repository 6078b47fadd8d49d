"""The learned aligner's building blocks: equivariance, observable projection, iterated prediction."""

from __future__ import annotations

import numpy as np
import torch

from napari_tomoml.models.aligner import MomentAligner, observable, predict_shifts
from napari_tomoml.progress import run_to_end
from napari_tomoml.recon.align import residual_rms
from napari_tomoml.sim.misalign import simulate_misaligned


def test_centroid_is_shift_equivariant():
    torch.manual_seed(0)
    net = MomentAligner(channels=8, layers=3)
    torch.nn.init.normal_(net.net.out.weight, std=0.1)  # a non-trivial learned weighting
    x = torch.arange(64, dtype=torch.float32)
    profile = torch.exp(-((x - 30) ** 2) / 40) + 0.5 * torch.exp(-((x - 36) ** 2) / 10)
    moved = torch.exp(-((x - 33) ** 2) / 40) + 0.5 * torch.exp(-((x - 39) ** 2) / 10)
    with torch.no_grad():
        c = net(torch.stack([profile, moved]))
    assert abs(float(c[1] - c[0]) - 3.0) < 1e-3


def test_observable_drops_rigid_motion_only():
    theta = torch.linspace(0, np.pi, 50, dtype=torch.float64)
    jitter = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rigid = torch.stack([torch.full((50,), 2.0), 3 * torch.cos(theta) + torch.sin(theta) - 1], dim=-1)
    assert torch.allclose(observable(jitter + rigid, theta), observable(jitter, theta), atol=1e-9)
    assert float(observable(jitter, theta).abs().mean()) > 0.5


def test_prediction_recovers_known_shifts():
    s = simulate_misaligned(n=32, rows=16, n_angles=60, seed=2)
    est = run_to_end(predict_shifts(MomentAligner(), torch.from_numpy(s.projections), s.theta, iterations=5))
    assert residual_rms(est, s.shifts, s.theta) < 0.1
