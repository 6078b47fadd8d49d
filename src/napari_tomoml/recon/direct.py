"""Matrix-free back-projection: the sparse back-projector's operator, evaluated pixel by pixel.

For each angle, every pixel reads the padded, filtered projection at its detector position
``u = center + x cos(theta) - r sin(theta)`` by linear interpolation, and the angles are summed.
The positions come from :func:`~napari_tomoml.recon.geometry.detector_terms`, as the sparse
matrices' do, so both give the same result to float32 rounding of the sums. Nothing is built or
cached: this wins where a geometry is used once for a few slices (a live preview at a new
centre), while the cached matrices win where it is used again and again (iterative solvers).

>>> import numpy as np, torch
>>> from napari_tomoml.recon.geometry import make_geometry
>>> geom = make_geometry(16, 16, np.linspace(0, np.pi, 4, endpoint=False), 8.0)
>>> float(backproject_direct(torch.ones(4, 1, 16), geom)[0, 8, 8])
4.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._workers import run_serial
from .geometry import Geometry, detector_terms

# Pixel-angle pairs per block: on CPU the block's temporaries stay in cache and the Python cost
# per block is a few percent (2**17..2**18 measured best); on a GPU, few large launches.
_BLOCK_CPU = 1 << 18
_BLOCK_GPU = 1 << 24


def backproject_direct(projections: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Back-project ``(angles, z, n_det)`` → ``(z, n, n)`` by direct interpolation (no autograd)."""
    if projections.device.type == "cpu":
        return run_serial(_backproject, projections, geom)  # thousands of small ops: see _workers
    return _backproject(projections, geom)


def _backproject(projections: torch.Tensor, geom: Geometry) -> torch.Tensor:
    n_angles, z, n_det = projections.shape
    n, width, device = geom.n, geom.padded_width, projections.device
    right = width - geom.pad_left - n_det
    padded = F.pad(projections.permute(1, 0, 2), (geom.pad_left, right + 1))  # (z, angles, width + 1)
    # each detector pixel's value and the step to its right neighbour as one complex number: one
    # gather fetches both (two gathers cost more), and value + frac * step is one addcmul
    taps = torch.stack([padded[..., :-1], torch.diff(padded, dim=-1)], dim=-1)
    table = torch.view_as_complex(taps).reshape(z, n_angles * width)
    terms = detector_terms(geom, slice(None), projections.dtype, device)
    row_term, col_term = (t.T.contiguous() for t in terms)  # (angles, n): angles outermost
    offsets = (torch.arange(n_angles, dtype=torch.int32, device=device) * width).view(-1, 1, 1)
    out = torch.empty((z, n, n), dtype=projections.dtype, device=device)

    budget = _BLOCK_GPU if device.type == "cuda" else _BLOCK_CPU
    per_chunk = min(n_angles, max(1, budget // n))
    rows = max(1, budget // (per_chunk * n))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        for a in range(0, n_angles, per_chunk):
            b = min(a + per_chunk, n_angles)
            u = row_term[a:b, start:stop, None] + col_term[a:b, None, :]  # (angles, rows, n), >= 0
            index = u.to(torch.int32).add_(offsets[a:b]).view(-1)  # truncation = floor, as u >= 0
            frac = u.frac_().view(-1)
            for s in range(z):
                value, step = torch.view_as_real(table[s].index_select(0, index)).unbind(1)
                interpolated = torch.addcmul(value, frac, step).view(u.shape)
                if a == 0:
                    torch.sum(interpolated, dim=0, out=out[s, start:stop])
                else:
                    out[s, start:stop] += interpolated.sum(dim=0)
    return out
