"""Parallel-beam projector and its exact adjoint, the back-projector, on torch.

Both take numpy or torch and give back the same kind; both are differentiable (the gradient of
one is the other), so they can sit inside a loss. Geometry and centre convention: see
:mod:`napari_tomoml.recon.geometry` (tomopy's: centre in pixels from the detector's left edge,
default ``n_det / 2``).

>>> import numpy as np
>>> from napari_tomoml.sim.phantom import shepp_logan_3d
>>> theta = np.linspace(0, np.pi, 90, endpoint=False)
>>> sino = project(shepp_logan_3d(64, 2), theta, device="cpu")
>>> sino.shape
(90, 2, 64)
>>> backproject(sino, theta, device="cpu").shape
(2, 64, 64)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _validate as v
from ._workers import run_serial
from .direct import backproject_direct
from .geometry import Geometry, SparseProjector, detector_terms, make_geometry

# Pixel-angle pairs per block of the matrix-free projector (as direct.py's back-projector).
_SPLAT_BLOCK_CPU = 1 << 18
_SPLAT_BLOCK_GPU = 1 << 24


def _operator(
    geom: Geometry, dtype: torch.dtype, device: torch.device
) -> tuple[SparseProjector, torch.device]:
    """The sparse operator, on ``device`` where torch has sparse CSR products (CPU, CUDA), else CPU."""
    compute = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    return SparseProjector(geom, dtype, compute), compute


def project_direct(volume: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Matrix-free projection ``(z, n, n)`` → ``(angles, z, n_det)``: every pixel splats onto its
    two detector pixels at every angle, at the positions the sparse matrices use (so both agree
    to float rounding), with memory bounded by a block of angles, whatever the geometry's size."""
    if volume.device.type == "cpu":
        return run_serial(_splat, volume, geom)  # thousands of small ops: see _workers
    return _splat(volume, geom)


def _splat(volume: torch.Tensor, geom: Geometry) -> torch.Tensor:
    z, n, width = volume.shape[0], geom.n, geom.padded_width
    device, dtype = volume.device, volume.dtype
    row_term, col_term = (t.T.contiguous() for t in detector_terms(geom, slice(None), dtype, device))
    offsets = (torch.arange(geom.n_angles, dtype=torch.int64, device=device) * width).view(-1, 1, 1)
    # one spare bin at the end: the right tap of the last angle's last bin lands there (weight 0)
    padded = torch.zeros((z, geom.n_angles * width + 1), dtype=dtype, device=device)
    budget = _SPLAT_BLOCK_GPU if device.type == "cuda" else _SPLAT_BLOCK_CPU
    per_chunk = min(geom.n_angles, max(1, budget // n))
    rows = max(1, budget // (per_chunk * n))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        for a in range(0, geom.n_angles, per_chunk):
            b = min(a + per_chunk, geom.n_angles)
            u = row_term[a:b, start:stop, None] + col_term[a:b, None, :]  # (angles, rows, n), >= 0
            index = u.to(torch.int64)  # truncation = floor, as u >= 0
            frac = u.sub_(index)
            index = index.add_(offsets[a:b]).view(-1)
            for s in range(z):
                pixels = volume[s, start:stop].unsqueeze(0)  # (1, rows, n), the same at every angle
                right = torch.mul(frac, pixels)
                padded[s].index_add_(0, index, torch.sub(pixels, right).view(-1))
                padded[s, 1:].index_add_(0, index, right.view(-1))  # the right tap: one bin on
    detector = padded[:, :-1].view(z, geom.n_angles, width)[..., geom.pad_left : geom.pad_left + geom.n_det]
    return detector.permute(1, 0, 2).contiguous()


def _project(volume: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """``(z, n, n)`` → ``(angles, z, n_det)`` without autograd bookkeeping."""
    op, compute = _operator(geom, volume.dtype, volume.device)
    z = volume.shape[0]
    if not op.cacheable and z <= 4:  # few slices: splatting beats rebuilding what does not fit
        return project_direct(volume.to(compute), geom).to(volume.device)
    flat = volume.to(compute).reshape(z, -1).T.contiguous()
    padded = op.project(flat).view(geom.n_angles, geom.padded_width, z)
    detector = padded[:, geom.pad_left : geom.pad_left + geom.n_det, :]
    return detector.permute(0, 2, 1).contiguous().to(volume.device)


def _direct_is_faster(op: SparseProjector, slices: int, once: bool) -> bool:
    """Whether :func:`backproject_direct` beats the sparse matrices for this call.

    Measured on CPU, in ns per pixel and angle: direct ~1 + 2 per slice; the sparse product
    0.3-2.5 per slice (less with more slices) once the matrices exist, which takes ~25 to build
    and cache, or ~6 to rebuild on every call where they do not fit the cache.
    """
    if op.cached("bp"):
        return False
    if not op.cacheable:
        return slices <= 4
    return once and slices <= 16  # a geometry used again (solvers) repays building its matrices


def _backproject(projections: torch.Tensor, geom: Geometry, once: bool = False) -> torch.Tensor:
    """``(angles, z, n_det)`` → ``(z, n, n)`` without autograd bookkeeping; ``once``: the caller
    does not expect to use this geometry again."""
    op, compute = _operator(geom, projections.dtype, projections.device)
    z = projections.shape[1]
    if _direct_is_faster(op, z, once):
        return backproject_direct(projections.to(compute), geom).to(projections.device)
    right = geom.padded_width - geom.pad_left - geom.n_det
    padded = F.pad(projections.to(compute).permute(0, 2, 1), (0, 0, geom.pad_left, right))
    flat = op.backproject(padded.reshape(-1, z))
    return flat.T.reshape(z, geom.n, geom.n).contiguous().to(projections.device)


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, volume, geom):
        ctx.geom = geom
        return _project(volume, geom)

    @staticmethod
    def backward(ctx, grad):
        return _backproject(grad.contiguous(), ctx.geom), None


class _Backproject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projections, geom, once):
        ctx.geom = geom
        return _backproject(projections, geom, once)

    @staticmethod
    def backward(ctx, grad):
        return _project(grad.contiguous(), ctx.geom), None, None


def project_tensor(volume: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Differentiable projection of a ``(z, n, n)`` tensor in a checked geometry (for solvers)."""
    return _Project.apply(volume, geom)


def backproject_tensor(projections: torch.Tensor, geom: Geometry, *, once: bool = False) -> torch.Tensor:
    """Differentiable back-projection of ``(angles, z, n_det)`` in a checked geometry (for solvers);
    ``once`` says the geometry will not be used again, so few slices skip building matrices."""
    return _Backproject.apply(projections, geom, once)


def project(volume, theta, *, center=None, n_det=None, device="auto"):
    """Line integrals of a volume ``(z, n, n)`` → projections ``(angles, z, n_det)``.

    A single slice ``(n, n)`` gives a sinogram ``(angles, n_det)``. ``theta`` in radians;
    ``center`` is where the rotation axis lands, in detector pixels from the left edge
    (default ``n_det / 2``); ``n_det`` defaults to ``n``. Pixels are unit length, so values are
    line integrals in pixel units.

    >>> import numpy as np
    >>> disk = np.zeros((33, 33), np.float32); disk[16, 16] = 1
    >>> sino = project(disk, [0.0, np.pi / 2], device="cpu")
    >>> sino.shape, float(sino.sum())
    ((2, 33), 2.0)
    """
    vol, single = v.as_stack(volume, "volume", kind="volume")
    if vol.shape[1] != vol.shape[2]:
        raise v.InputError(f"volume slices must be square (z, n, n); got shape {tuple(vol.shape)}")
    n = vol.shape[-1]
    n_det = v.as_size(n_det, "n_det", n)
    geom = make_geometry(n, n_det, v.as_theta(theta), v.as_center(center, n_det))
    tensor, was_numpy = v.to_tensor(vol, device)
    out = project_tensor(tensor, geom)
    return v.like_input(out[:, 0, :] if single else out, was_numpy)


def backproject(projections, theta, *, center=None, n=None, device="auto"):
    """Adjoint of :func:`project`: smear projections ``(angles, z, n_det)`` back → ``(z, n, n)``.

    A sinogram ``(angles, n_det)`` gives one slice ``(n, n)``; ``n`` defaults to ``n_det``. This is
    the plain transpose (a sum over angles, no filter, no angular weight): ``fbp`` adds those.

    >>> import numpy as np
    >>> bp = backproject(np.ones((4, 16), np.float32), np.linspace(0, np.pi, 4, endpoint=False), device="cpu")
    >>> bp.shape, float(bp[8, 8])
    ((16, 16), 4.0)
    """
    proj, single = v.as_stack(projections, "projections")
    n_det = proj.shape[-1]
    n = v.as_size(n, "n", n_det)
    geom = make_geometry(n, n_det, v.as_theta(theta, proj.shape[0]), v.as_center(center, n_det))
    tensor, was_numpy = v.to_tensor(proj, device)
    out = backproject_tensor(tensor, geom, once=True)
    return v.like_input(out[0] if single else out, was_numpy)
