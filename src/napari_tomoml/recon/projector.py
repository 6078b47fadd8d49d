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
from .direct import backproject_direct
from .geometry import Geometry, SparseProjector, make_geometry


def _operator(
    geom: Geometry, dtype: torch.dtype, device: torch.device
) -> tuple[SparseProjector, torch.device]:
    """The sparse operator, on ``device`` where torch has sparse CSR products (CPU, CUDA), else CPU."""
    compute = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    return SparseProjector(geom, dtype, compute), compute


def _project(volume: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """``(z, n, n)`` → ``(angles, z, n_det)`` without autograd bookkeeping."""
    op, compute = _operator(geom, volume.dtype, volume.device)
    z = volume.shape[0]
    flat = volume.to(compute).reshape(z, -1).T.contiguous()
    padded = op.project(flat).view(geom.n_angles, geom.padded_width, z)
    detector = padded[:, geom.pad_left : geom.pad_left + geom.n_det, :]
    return detector.permute(0, 2, 1).contiguous().to(volume.device)


def row_and_column_sums(
    geom: Geometry, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The projector's row sums ``A 1`` (ray lengths, detector-major ``(angles, n_det, 1)``) and
    column sums ``A^T 1`` (``(1, n, n)``), from one pass over the chunks' patterns."""
    op, compute = _operator(geom, dtype, device)
    width, left = geom.padded_width, geom.pad_left
    ones = torch.ones((geom.n**2, 1), dtype=dtype, device=compute)
    rows = torch.empty((geom.n_angles, geom.n_det, 1), dtype=dtype, device=compute)
    cols = torch.zeros_like(ones)
    for i, angles in enumerate(op.chunks):
        pattern = op.pattern(i)
        k = angles.stop - angles.start
        rows[angles] = op.project_chunk(i, pattern, ones).view(k, width, 1)[:, left : left + geom.n_det]
        padded = torch.zeros((k, width, 1), dtype=dtype, device=compute)
        padded[:, left : left + geom.n_det] = 1
        cols += op.backproject_chunk(i, pattern, padded.view(k * width, 1))
    return rows.to(device), cols.view(1, geom.n, geom.n).to(device)


def weighted_residual_backprojection(
    x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, geom: Geometry
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A^T (weights * (y - A x))`` and ``‖A x - y‖²``, one chunk of angles at a time (no autograd).

    ``x`` is ``(z, n, n)``; ``y`` and ``weights`` are detector-major, ``(angles, n_det, z)`` and
    ``(angles, n_det, 1)``. Each chunk projects, weighs its residual and back-projects it with the
    same sparse pattern, so a geometry too large for the cache is built once per SIRT iteration
    instead of twice, and no full projection is ever held.
    """
    op, compute = _operator(geom, x.dtype, x.device)
    z, width, left = x.shape[0], geom.padded_width, geom.pad_left
    flat = x.to(compute).reshape(z, -1).T.contiguous()
    y, weights = y.to(compute), weights.to(compute)
    out = torch.zeros_like(flat)
    squared = torch.zeros((), dtype=x.dtype, device=compute)
    for i, angles in enumerate(op.chunks):
        pattern = op.pattern(i)
        k = angles.stop - angles.start
        ax = op.project_chunk(i, pattern, flat).view(k, width, z)[:, left : left + geom.n_det]
        residual = torch.sub(y[angles], ax)
        squared += residual.square().sum()
        padded = torch.zeros((k, width, z), dtype=x.dtype, device=compute)
        torch.mul(residual, weights[angles], out=padded[:, left : left + geom.n_det])
        out += op.backproject_chunk(i, pattern, padded.view(k * width, z))
    return out.T.reshape(z, geom.n, geom.n).to(x.device), squared.to(x.device)


def _direct_is_faster(op: SparseProjector, slices: int, once: bool) -> bool:
    """Whether :func:`backproject_direct` beats the sparse matrices for this call.

    Measured on CPU, in ns per pixel and angle: direct ~1 + 2 per slice; the sparse products
    1-4.5 per slice (less with more slices) once the pattern exists, which takes ~4 to build
    (more the first time, as fresh memory is touched), again on every call where it does not fit
    the cache.
    """
    if op.cached():
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
