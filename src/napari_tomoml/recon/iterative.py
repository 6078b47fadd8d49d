"""Iterative reconstruction: SIRT, CGLS, and a regularised solver driven by autograd.

All three reconstruct every row (slice) of the projections at once, each slice its own problem,
on ``device``. Each has a ``*_steps`` generator yielding one :class:`Progress` per iteration
(``data["residual"]`` = ‖Ax − y‖ / ‖y‖, for a live plot; cancel at any yield) and a plain function.

:func:`solve` is the general one, after the automatic-differentiation approach to tomography
(e.g. Du et al., "Three dimensions, two microscopes, one code", 2019): minimise

    ½ ‖A x − y‖² / n_angles  +  s · (tv · Σ √(|∇x|² + ε²)  +  l1 · Σ |x|)

where ``s`` is the image's value scale (99th percentile of the starting image), so the weights
mean the same in any units; with Adam, projecting onto ``x ≥ 0`` and a support mask after every
step, optionally on interleaved subsets of the angles (``batch_angles``) to bound memory per step.

>>> import numpy as np
>>> from napari_tomoml.recon import project
>>> from napari_tomoml.sim.phantom import shepp_logan_3d
>>> vol = shepp_logan_3d(48, 1)
>>> theta = np.linspace(0, np.pi, 60, endpoint=False)
>>> rec = sirt(project(vol, theta, device="cpu"), theta, n_iter=50, device="cpu")
>>> bool(np.abs(rec - vol).mean() < 0.05)
True
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import torch

from ..errors import InputError
from ..progress import Progress, ProgressArg, run_to_end
from . import _validate as v
from .fbp import fbp
from .geometry import Geometry, make_geometry
from .projector import (
    backproject_tensor,
    project_tensor,
    row_and_column_sums,
    weighted_residual_backprojection,
)


def _setup(projections, theta, center, n, device):
    """Checked tensors ``(angles, rows, cols)`` and geometry; flags to give numpy / 2-D back."""
    proj, single = v.as_stack(projections, "projections")
    n_angles, _, n_det = proj.shape
    theta = v.as_theta(theta, n_angles)
    geom = make_geometry(v.as_size(n, "n", n_det), n_det, theta, v.as_center(center, n_det))
    y, was_numpy = v.to_tensor(proj, device)
    return y.detach(), geom, single, was_numpy


def _finish(x: torch.Tensor, single: bool, was_numpy: bool):
    return v.like_input(x[0] if single else x, was_numpy)


def _relative_residual(ax: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(ax - y) / torch.linalg.vector_norm(y).clamp_min(1e-30))


def _check_iterations(n_iter: int) -> None:
    if int(n_iter) != n_iter or n_iter < 1:
        raise InputError(f"n_iter={n_iter!r} must be a positive integer")


def sirt_steps(
    projections,
    theta,
    *,
    center=None,
    n_iter: int = 100,
    nonneg: bool = True,
    n=None,
    device="auto",
    callback: Callable[[int, torch.Tensor, float], object] | None = None,
) -> Generator[Progress, None, np.ndarray | torch.Tensor]:
    """:func:`sirt` as a generator of per-iteration :class:`Progress`."""
    _check_iterations(n_iter)
    y, geom, single, was_numpy = _setup(projections, theta, center, n, device)
    # SIRT's diagonal scalings, computed once: inverse ray lengths (row sums) and inverse pixel hit
    # counts (column sums)
    rows, cols = row_and_column_sums(geom, y.dtype, y.device)
    inv_rows, inv_cols = 1.0 / rows.clamp_min(1e-6), 1.0 / cols.clamp_min(1e-6)
    target = y.permute(0, 2, 1).contiguous()  # detector-major, as the chunked pass reads it
    norm = torch.linalg.vector_norm(y).clamp_min(1e-30)
    x = torch.zeros((y.shape[1], geom.n, geom.n), dtype=y.dtype, device=y.device)
    for it in range(1, n_iter + 1):
        update, squared = weighted_residual_backprojection(x, target, inv_rows, geom)
        x.addcmul_(inv_cols, update)
        if nonneg:
            x.clamp_(min=0)
        residual = float(squared.sqrt() / norm)
        if callback is not None:
            callback(it, x, residual)
        yield Progress(it, n_iter, "SIRT", {"residual": residual})
    return _finish(x, single, was_numpy)


def sirt(
    projections,
    theta,
    *,
    center=None,
    n_iter: int = 100,
    nonneg: bool = True,
    n=None,
    device="auto",
    callback=None,
    progress: ProgressArg = None,
):
    """SIRT reconstruction of ``(angles, rows, cols)`` → ``(rows, n, n)``; robust, slow to sharpen.

    ``nonneg`` clips negative values each iteration; ``callback(iteration, x, residual)`` is called
    after each one. A sinogram ``(angles, cols)`` gives one slice.

    >>> import numpy as np
    >>> sirt(np.zeros((30, 16), np.float32), np.linspace(0, np.pi, 30), n_iter=2, device="cpu").shape
    (16, 16)
    """
    return run_to_end(
        sirt_steps(
            projections,
            theta,
            center=center,
            n_iter=n_iter,
            nonneg=nonneg,
            n=n,
            device=device,
            callback=callback,
        ),
        progress,
    )


def _per_slice(t: torch.Tensor, dims) -> torch.Tensor:
    """Squared norm of each slice; the slice axis is 1 for projections, 0 for volumes."""
    return (t * t).sum(dim=dims, keepdim=True)


def cgls_steps(
    projections,
    theta,
    *,
    center=None,
    n_iter: int = 30,
    n=None,
    device="auto",
    callback: Callable[[int, torch.Tensor, float], object] | None = None,
) -> Generator[Progress, None, np.ndarray | torch.Tensor]:
    """:func:`cgls` as a generator of per-iteration :class:`Progress`."""
    _check_iterations(n_iter)
    y, geom, single, was_numpy = _setup(projections, theta, center, n, device)
    x = torch.zeros((y.shape[1], geom.n, geom.n), dtype=y.dtype, device=y.device)
    r = y.clone()
    s = backproject_tensor(r, geom)
    p = s.clone()
    gamma = _per_slice(s, (1, 2))
    tiny = torch.finfo(y.dtype).tiny
    for it in range(1, n_iter + 1):
        q = project_tensor(p, geom)
        # step sizes per slice: every slice is its own least-squares problem
        alpha = gamma / _per_slice(q, (0, 2)).permute(1, 0, 2).clamp_min(tiny)
        x = x + alpha * p
        r = r - alpha.permute(1, 0, 2) * q
        s = backproject_tensor(r, geom)
        gamma_new = _per_slice(s, (1, 2))
        p = s + (gamma_new / gamma.clamp_min(tiny)) * p
        gamma = gamma_new
        residual = float(torch.linalg.vector_norm(r) / torch.linalg.vector_norm(y).clamp_min(1e-30))
        if callback is not None:
            callback(it, x, residual)
        yield Progress(it, n_iter, "CGLS", {"residual": residual})
    return _finish(x, single, was_numpy)


def cgls(
    projections,
    theta,
    *,
    center=None,
    n_iter: int = 30,
    n=None,
    device="auto",
    callback=None,
    progress: ProgressArg = None,
):
    """CGLS (conjugate gradients on the least-squares problem): fast, unregularised; stop early on noisy data.

    >>> import numpy as np
    >>> cgls(np.zeros((30, 16), np.float32), np.linspace(0, np.pi, 30), n_iter=2, device="cpu").shape
    (16, 16)
    """
    return run_to_end(
        cgls_steps(projections, theta, center=center, n_iter=n_iter, n=n, device=device, callback=callback),
        progress,
    )


def total_variation(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Smoothed isotropic 2-D total variation of each ``(y, x)`` slice, summed.

    >>> import torch
    >>> float(total_variation(torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]), 0.0))   # one step, 2 px long
    2.0
    """
    dy = torch.diff(x, dim=-2, append=x[..., -1:, :])  # replicate edge: no jump at the border
    dx = torch.diff(x, dim=-1, append=x[..., :, -1:])
    return (torch.sqrt(dy * dy + dx * dx + eps * eps) - eps).sum()


def _angle_subsets(geom: Geometry, batch_angles: int | None) -> list[tuple[np.ndarray, Geometry]]:
    """Interleaved subsets of the angles, each spread over the whole turn, with their geometries."""
    if batch_angles is None or batch_angles >= geom.n_angles:
        return [(np.arange(geom.n_angles), geom)]
    if int(batch_angles) != batch_angles or batch_angles < 1:
        raise InputError(f"batch_angles={batch_angles!r} must be a positive integer")
    n_sets = -(-geom.n_angles // int(batch_angles))
    theta = np.asarray(geom.theta)
    order = np.argsort(theta)
    subsets = [np.sort(order[i::n_sets]) for i in range(n_sets)]
    return [(idx, make_geometry(geom.n, geom.n_det, theta[idx], geom.center)) for idx in subsets]


def _support_mask(support, shape, ref: torch.Tensor) -> torch.Tensor | None:
    if support is None:
        return None
    mask = torch.as_tensor(np.asarray(support) if not isinstance(support, torch.Tensor) else support)
    if mask.shape not in (shape[1:], shape):
        raise InputError(
            f"support must have shape {tuple(shape[1:])} or {tuple(shape)}; got {tuple(mask.shape)}"
        )
    return mask.to(device=ref.device, dtype=ref.dtype)


def solve_steps(
    projections,
    theta,
    *,
    center=None,
    tv: float = 0.0,
    l1: float = 0.0,
    nonneg: bool = True,
    support=None,
    n_iter: int = 100,
    lr: float | None = None,
    batch_angles: int | None = None,
    init=None,
    n=None,
    device="auto",
    callback: Callable[[int, torch.Tensor, float], object] | None = None,
) -> Generator[Progress, None, np.ndarray | torch.Tensor]:
    """:func:`solve` as a generator of per-iteration :class:`Progress`."""
    _check_iterations(n_iter)
    tv, l1 = v.as_weight(tv, "regularisation weight tv"), v.as_weight(l1, "regularisation weight l1")
    if lr is not None:
        lr = v.as_weight(lr, "lr", positive=True)
    y, geom, single, was_numpy = _setup(projections, theta, center, n, device)
    shape = (y.shape[1], geom.n, geom.n)
    if init is None:  # start from FBP: far fewer iterations than from zero
        start = fbp(y, np.asarray(geom.theta), geom.center, n=geom.n)
    else:
        start, _ = v.to_tensor(init, y.device)
        start = start[None] if start.ndim == 2 else start
        if tuple(start.shape) != shape:
            raise InputError(f"init must have shape {shape}; got {tuple(start.shape)}")
    mask = _support_mask(support, shape, y)
    scale = float(torch.quantile(start.detach().abs().flatten()[:1_000_000].float(), 0.99)) or 1.0
    x = start.detach().to(y.dtype).clone()
    if nonneg:
        x.clamp_(min=0)
    if mask is not None:
        x *= mask
    x.requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr if lr is not None else 0.01 * scale)
    subsets = _angle_subsets(geom, batch_angles)
    eps = 1e-3 * scale
    for it in range(1, n_iter + 1):
        idx, sub_geom = subsets[(it - 1) % len(subsets)]
        y_sub = y if len(subsets) == 1 else y[torch.as_tensor(idx, device=y.device)]
        optimizer.zero_grad(set_to_none=True)
        ax = project_tensor(x, sub_geom)
        loss = 0.5 * ((ax - y_sub) ** 2).sum() / len(idx)
        if tv:
            loss = loss + tv * scale * total_variation(x, eps)
        if l1:
            loss = loss + l1 * scale * x.abs().sum()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            if nonneg:
                x.clamp_(min=0)
            if mask is not None:
                x *= mask
        residual = _relative_residual(ax.detach(), y_sub)
        if callback is not None:
            callback(it, x.detach(), residual)
        yield Progress(it, n_iter, "solve", {"residual": residual, "loss": float(loss.detach())})
    return _finish(x.detach(), single, was_numpy)


def solve(
    projections,
    theta,
    *,
    center=None,
    tv: float = 0.0,
    l1: float = 0.0,
    nonneg: bool = True,
    support=None,
    n_iter: int = 100,
    lr: float | None = None,
    batch_angles: int | None = None,
    init=None,
    n=None,
    device="auto",
    callback=None,
    progress: ProgressArg = None,
):
    """Regularised reconstruction by gradient descent through the differentiable projector.

    ``tv`` and ``l1`` weigh total variation and sparsity against the data term (averaged over
    angles), relative to the image's value scale: about 0.01 suits tv on noisy sparse views.
    ``nonneg`` and ``support`` (a ``(n, n)`` or ``(rows, n, n)`` mask, e.g. a thresholded FBP)
    are enforced after every step. ``batch_angles`` uses that many interleaved angles per step
    (less memory, more steps). ``init`` defaults to the FBP; ``lr`` to 1% of its 99th percentile.

    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 30, endpoint=False)
    >>> solve(np.zeros((30, 16), np.float32), theta, tv=0.01, n_iter=3, device="cpu").shape
    (16, 16)
    """
    return run_to_end(
        solve_steps(
            projections,
            theta,
            center=center,
            tv=tv,
            l1=l1,
            nonneg=nonneg,
            support=support,
            n_iter=n_iter,
            lr=lr,
            batch_angles=batch_angles,
            init=init,
            n=n,
            device=device,
            callback=callback,
        ),
        progress,
    )
