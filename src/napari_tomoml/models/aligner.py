"""A learned alignment predictor that only learns what can be observed.

Why not the notebook's 3-D CNN: it regressed all 360 shifts of a stack, but a rigid move of the
sample (``dx = a cos(theta) + b sin(theta) + c``, a constant ``dy``) changes the shifts without
changing the data, so part of its target was unlearnable noise. Here both the prediction and the
target are projected onto what the data fixes (:func:`observable`) before the loss.

The design follows the consistency conditions of parallel-beam data: every projection's
vertical mass profile (summed over x) is the same up to its ``dy``, and the horizontal centre of
mass of each projection follows ``a cos + b sin + c`` exactly, so what is left over is ``dx``.
Plain moments are ruined by noise, background drift, tilts and rows moving into view; a small
shift-equivariant 1-D CNN (shared weights over all projections) learns a corrected weighting of
each column profile, and a centroid read-out turns it into a position. Equivariance means a
shifted profile gives a shifted centroid by construction; the network learns only robustness
(noise, background drift, tilts). The vertical profile is nearly flat, so its centroid barely
moves with ``dy``: dy comes from registering each row profile to the stack's mean profile.
Iterating (undo the estimate, re-crop the rows, predict the residual) converges.

>>> import torch
>>> net = MomentAligner()
>>> profiles = torch.zeros(3, 40); profiles[:, 18:22] = 1.0
>>> [round(v, 2) for v in net(profiles).tolist()]
[19.5, 19.5, 19.5]
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class _ProfileNet(nn.Module):
    """Residual 1-D CNN over one profile with dilations growing to a wide receptive field."""

    def __init__(self, channels: int, layers: int):
        super().__init__()
        convs = []
        cin = 3
        for i in range(layers):
            convs.append(nn.Conv1d(cin, channels, 3, padding=2**i, dilation=2**i))
            cin = channels
        self.convs = nn.ModuleList(convs)
        self.out = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)  # starts as the plain centre of mass
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels: the profile, and two global levels (mean, low quantile) to judge a baseline by
        low = torch.quantile(x, 0.1, dim=-1, keepdim=True)
        h = torch.cat([x[:, None], x.mean(-1, keepdim=True)[:, None].expand_as(x[:, None]),
                       low[:, None].expand_as(x[:, None])], dim=1)
        for conv in self.convs:
            h = torch.nn.functional.silu(conv(h))
        return self.out(h)[:, 0]


class MomentAligner(nn.Module):
    """A profile network ending in a centroid: the learned horizontal centre of each projection."""

    def __init__(self, channels: int = 16, layers: int = 6):
        super().__init__()
        self.config = {"channels": int(channels), "layers": int(layers)}
        self.net = _ProfileNet(channels, layers)

    def centroid(self, profiles: torch.Tensor) -> torch.Tensor:
        """Learned centroid (in pixel indices) of each profile ``(N, L)``; profiles of one stack
        should share a scale (see :func:`normalize_profiles`)."""
        weights = torch.relu(profiles + self.net(profiles))
        pos = torch.arange(profiles.shape[-1], dtype=profiles.dtype, device=profiles.device)
        return (weights * pos).sum(-1) / weights.sum(-1).clamp_min(1e-6)

    def forward(self, col_profiles: torch.Tensor) -> torch.Tensor:
        """Column profiles ``(N, cols)`` → raw x positions ``(N,)`` before projection."""
        return self.centroid(col_profiles)


def normalize_profiles(profiles: torch.Tensor) -> torch.Tensor:
    """Divide the profiles of one stack ``(angles, L)`` by their common mean level, so the network
    sees the same numbers whatever the attenuation or the number of rows summed."""
    return profiles / profiles.abs().mean().clamp_min(1e-6)


def observable(shifts: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Project ``(..., angles, 2)`` shifts onto what the data determines: dx minus its
    least-squares ``a cos + b sin + c``, dy minus its mean (differentiable, batched).

    >>> th = torch.linspace(0, math.pi, 30)
    >>> s = torch.stack([torch.full((30,), 3.0), 2 * torch.cos(th) + 1], dim=-1)
    >>> bool(observable(s, th).abs().max() < 1e-5)
    True
    """
    basis = torch.stack([torch.cos(theta), torch.sin(theta), torch.ones_like(theta)], dim=-1).to(shifts)
    proj = basis @ torch.linalg.pinv(basis)  # (angles, angles) projector onto the rigid part
    dx = shifts[..., 1] - (proj @ shifts[..., 1, None])[..., 0]
    dy = shifts[..., 0] - shifts[..., 0].mean(-1, keepdim=True)
    return torch.stack([dy, dx], dim=-1)


def margin_rows(shift_y: np.ndarray | torch.Tensor, rows: int) -> int:
    """Rows cropped at top and bottom so that, after undoing ``dy``, the rows kept show the same
    slices of the sample in every projection."""
    reach = float(np.abs(np.asarray(shift_y)).max()) if len(shift_y) else 0.0
    return min(int(math.ceil(reach)) + 1, max(rows // 4, 0))


def profiles(stack: torch.Tensor, margin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row profiles (summed over x) and column profiles (summed over the kept rows) of a stack
    ``(angles, rows, cols)``, each normalised per stack."""
    rows = stack.shape[1]
    kept = stack[:, margin : rows - margin] if rows - 2 * margin >= 1 else stack
    return normalize_profiles(kept.sum(-1)), normalize_profiles(kept.sum(1))


def row_shifts(row_profiles: torch.Tensor) -> torch.Tensor:
    """dy of each row profile ``(angles, L)`` relative to their mean profile, sub-pixel."""
    from ..recon.align import register

    reference = row_profiles.mean(0, keepdim=True).expand_as(row_profiles)
    return register(row_profiles[:, None], reference[:, None], window=(0.0, 0.4)).double()[:, 1]


def predict_shifts(model: MomentAligner, projections: torch.Tensor, theta, *, iterations: int = 4):
    """Shifts ``(angles, 2)`` (dy, dx), unobservable parts removed, by iterating the network:
    undo the current estimate, read the residual from the profiles, add it. A generator that
    yields after each iteration and returns the shifts as float64 numpy.

    Each iteration re-centres the crop of rows, so that rows moving into view stop biasing dy.
    """
    from ..progress import Progress
    from ..recon.align import fourier_shift

    th = torch.as_tensor(np.asarray(theta, dtype=np.float64), dtype=torch.float64)
    n_angles, rows, _ = projections.shape
    shifts = torch.zeros((n_angles, 2), dtype=torch.float64)
    fit_dy = rows >= 4
    model.eval()
    with torch.no_grad():
        for it in range(iterations):
            current = fourier_shift(projections, -shifts.float()) if it else projections
            margin = margin_rows(shifts[:, 0].numpy(), rows) if fit_dy else 0
            row_p, col_p = profiles(current.float(), margin)
            raw = torch.zeros((n_angles, 2), dtype=torch.float64)
            raw[:, 1] = model(col_p).double().cpu()
            # a vertical mass profile is nearly flat, so its centroid hardly moves with dy: the
            # rows come from registering each profile to the stack's mean profile instead
            raw[:, 0] = row_shifts(row_p).cpu() if fit_dy else 0.0
            shifts = observable(shifts + observable(raw, th), th)
            yield Progress(it + 1, iterations, "learned alignment")
    return shifts.numpy()
