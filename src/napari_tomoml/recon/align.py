"""Classical alignment of projection stacks: sub-pixel shifts, registration, xcorr, joint.

Convention (as in :mod:`napari_tomoml.sim.misalign`): ``shifts`` is ``(angles, 2)`` = ``(dy, dx)``
pixels and the measured projection is ``scipy.ndimage.shift(aligned, (dy, dx))``.

Some shifts cannot be seen in the data: moving the whole sample by ``(a, b)`` in the slice plane
shifts projection ``theta`` by ``dx = a cos(theta) + b sin(theta)``, and moving it up or down
shifts every projection by the same ``dy``. Both only move the reconstruction, so every method
here returns shifts with those parts removed (:func:`remove_unobservable`). A constant ``dx`` is
a rotation-centre offset: it is kept when the centre is refined, removed when it is fixed.

Everything is batched over projections on torch (CPU or GPU): the registration of all pairs is
one FFT and a few Newton steps on the analytic cross-correlation (sub-pixel without
quantisation), and joint alignment reconstructs all rows at once with the package's projector.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..progress import Progress
from .fbp import fbp
from .geometry import make_geometry
from .projector import project_tensor

# Angles per FFT batch when shifting or registering: bounds memory on large stacks.
_BATCH_ELEMENTS = 1 << 24


def check_stack(projections, theta=None) -> tuple[np.ndarray | torch.Tensor, np.ndarray | None]:
    """Check an alignment input: at least two projections ``(angles, rows, cols)``, finite, and
    ``theta`` of the same length. Raises :class:`~napari_tomoml.errors.InputError`."""
    arr = projections if isinstance(projections, torch.Tensor) else np.asarray(projections)
    if arr.ndim != 3:
        raise InputError(f"projections must be (angles, rows, cols); got shape {tuple(arr.shape)}")
    if arr.shape[0] < 2:
        raise InputError(f"alignment needs at least two projections; got {arr.shape[0]}")
    if min(arr.shape[1:]) < 1:
        raise InputError(f"projections are empty: shape {tuple(arr.shape)}")
    finite = torch.isfinite(arr).all() if isinstance(arr, torch.Tensor) else np.isfinite(arr).all()
    if not bool(finite):
        raise InputError(
            "projections contain NaN or infinite values (e.g. -log of zero counts); replace them first"
        )
    th = None
    if theta is not None:
        th = np.asarray(theta.detach().cpu() if isinstance(theta, torch.Tensor) else theta, dtype=np.float64)
        if th.ndim != 1 or th.size != arr.shape[0]:
            raise InputError(f"theta has {th.size} angles but the projections have {arr.shape[0]}")
        if not np.isfinite(th).all():
            raise InputError("theta contains NaN or infinite angles")
    return arr, th


def check_shifts(shifts, n_angles: int) -> np.ndarray:
    arr = np.asarray(shifts, dtype=np.float64)
    if arr.shape != (n_angles, 2):
        raise InputError(f"shifts must be (angles, 2) = ({n_angles}, 2) as (dy, dx); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError("shifts contain NaN or infinite values")
    return arr


def rigid_basis(theta) -> np.ndarray:
    """``(angles, 3)`` columns cos, sin, 1: the dx of a rigidly moved sample or axis."""
    theta = np.asarray(theta, dtype=np.float64)
    return np.stack([np.cos(theta), np.sin(theta), np.ones_like(theta)], axis=1)


def remove_unobservable(shifts, theta, *, keep_center: bool = False) -> np.ndarray:
    """Shifts without the parts a rigid move of the sample explains: the least-squares
    ``a cos(theta) + b sin(theta) (+ c)`` of dx and the mean of dy. With ``keep_center`` the
    constant ``c`` of dx (a rotation-centre offset) stays.

    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> s = np.stack([np.full(90, 2.0), 3 * np.cos(theta) - np.sin(theta) + 1.5], axis=1)
    >>> bool(np.abs(remove_unobservable(s, theta)).max() < 1e-9)
    True
    """
    s = np.array(shifts, dtype=np.float64)
    basis = rigid_basis(theta)
    coef, *_ = np.linalg.lstsq(basis, s[:, 1], rcond=None)
    if keep_center:
        coef[2] = 0.0
    s[:, 1] -= basis @ coef
    s[:, 0] -= s[:, 0].mean()
    return s


def residual_rms(estimate, truth, theta) -> float:
    """RMS (px, over both axes) of ``estimate - truth`` after removing the unobservable parts:
    the alignment error that matters for the reconstruction.

    >>> theta = np.linspace(0, np.pi, 45, endpoint=False)
    >>> truth = np.random.default_rng(0).normal(size=(45, 2))
    >>> residual_rms(truth + [1.0, 0.5], truth, theta) < 1e-9
    True
    """
    diff = remove_unobservable(np.asarray(estimate) - np.asarray(truth), theta)
    return float(np.sqrt(np.mean(diff**2)))


# --------------------------------------------------------------------------- shifting
def _frequencies(n: int, device, dtype=torch.float32) -> torch.Tensor:
    return torch.fft.fftfreq(n, device=device, dtype=dtype)


def fourier_shift(stack: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``out[i] = scipy.ndimage.shift(stack[i], shifts[i])`` by a Fourier phase ramp (exact for
    band-limited data). Edges: each projection is padded by replicating its border before the
    shift, so what moves into view is the edge value continued, never wrapped-around data.

    >>> x = torch.zeros(1, 8, 16); x[0, :, 8] = 1
    >>> y = fourier_shift(x, torch.tensor([[0.0, 2.0]]))
    >>> int(y[0, 3].argmax())
    10
    """
    n, rows, cols = stack.shape
    shifts = shifts.to(device=stack.device, dtype=torch.float32)
    reach = float(shifts.abs().max()) if n else 0.0
    pad = int(math.ceil(reach)) + 2
    pad_y = pad if rows > 1 else 0
    out = torch.empty_like(stack)
    per = max(1, _BATCH_ELEMENTS // ((rows + 2 * pad_y) * (cols + 2 * pad)))
    for a in range(0, n, per):
        block = stack[a : a + per].float()
        padded = F.pad(block[:, None], (pad, pad, pad_y, pad_y), mode="replicate")[:, 0]
        h, w = padded.shape[-2:]
        ky = _frequencies(h, stack.device)[None, :, None]
        kx = _frequencies(w, stack.device)[None, None, :]
        s = shifts[a : a + per]
        # the phase ramp is separable: two 1-D ramps instead of trigonometry on every pixel
        ramp_y = _unit(-2 * math.pi * ky[..., 0] * s[:, 0, None])[:, :, None]
        ramp_x = _unit(-2 * math.pi * kx[:, 0] * s[:, 1, None])[:, None, :]
        moved = torch.fft.ifft2(torch.fft.fft2(padded) * ramp_y * ramp_x).real
        out[a : a + per] = moved[:, pad_y : pad_y + rows, pad : pad + cols].to(stack.dtype)
    return out


def _tensor(proj) -> torch.Tensor:
    """A float32 tensor of the stack; read-only (memory-mapped) numpy input is copied."""
    return proj if isinstance(proj, torch.Tensor) else torch.from_numpy(np.require(proj, np.float32, ["C", "W"]))


def _unit(phase: torch.Tensor) -> torch.Tensor:
    return torch.polar(torch.ones_like(phase), phase)


# --------------------------------------------------------------------------- registration
def _tukey(n: int, alpha: float, device) -> torch.Tensor:
    if n < 4 or alpha <= 0:
        return torch.ones(n, device=device)
    x = (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n
    w = torch.ones(n, device=device, dtype=torch.float64)
    edge = alpha / 2
    lo, hi = x < edge, x > 1 - edge
    w[lo] = 0.5 * (1 - torch.cos(math.pi * x[lo] / edge))
    w[hi] = 0.5 * (1 - torch.cos(math.pi * (1 - x[hi]) / edge))
    return w.float()


def register(moving: torch.Tensor, reference: torch.Tensor, *, estimate_dy: bool = True,
             window: tuple[float, float] = (0.4, 0.1), passes: int = 3) -> torch.Tensor:
    """Sub-pixel shifts ``(B, 2)`` = (dy, dx) with ``moving[i] ≈ shift(reference[i], s[i])``.

    Cross-correlation of the windowed, mean-free images: its integer peak from one FFT, then
    Newton steps on the exact Fourier series of the correlation, so the result is continuous
    (no upsampling grid, no 0.1 px quantisation). All pairs at once. The window keeps edges
    from dominating but pulls the estimate towards zero, so ``passes`` > 1 undoes the estimate
    and registers what is left (the bias vanishes as the residual does). ``estimate_dy=False``
    keeps dy at 0 (a few detector rows do not fix a vertical shift).

    >>> ref = torch.zeros(2, 32, 32); ref[:, 12:20, 10:22] = 1
    >>> from scipy import ndimage
    >>> mov = torch.from_numpy(np.stack([ndimage.shift(r, (1.3, -2.6), order=3) for r in ref.numpy()]))
    >>> [round(v, 1) for v in register(mov, ref)[0].tolist()]
    [1.3, -2.6]
    """
    total = _register_once(moving, reference, estimate_dy, window)
    for _ in range(passes - 1):
        total = total + _register_once(fourier_shift(moving, -total), reference, estimate_dy, window)
    return total


def _register_once(moving, reference, estimate_dy, window, newton_steps: int = 8) -> torch.Tensor:
    b, rows, cols = moving.shape
    dev = moving.device
    out = torch.zeros((b, 2), dtype=torch.float64, device=dev)
    use_dy = estimate_dy and rows >= 4
    win = _tukey(cols, window[1], dev)[None, :]
    win = win * (_tukey(rows, window[0], dev)[:, None] if use_dy else torch.ones(rows, 1, device=dev))
    ky = _frequencies(rows, dev, torch.float64)[None, :, None] * (2 * math.pi)
    kx = _frequencies(cols, dev, torch.float64)[None, None, :] * (2 * math.pi)
    per = max(1, _BATCH_ELEMENTS // (rows * cols * 4))
    for a in range(0, b, per):
        m = moving[a : a + per].float()
        r = reference[a : a + per].float()
        m = (m - m.mean(dim=(1, 2), keepdim=True)) * win
        r = (r - r.mean(dim=(1, 2), keepdim=True)) * win
        if not use_dy:  # correlate along x only: sum the rows' cross-spectra
            cross = (torch.fft.fft(m, dim=-1) * torch.fft.fft(r, dim=-1).conj()).sum(1, keepdim=True)
            kyy = torch.zeros_like(ky[:, :1])
        else:
            cross = torch.fft.fft2(m) * torch.fft.fft2(r).conj()
            kyy = ky
        cross = cross.to(torch.complex128)
        corr = torch.fft.ifft2(cross).real if use_dy else torch.fft.ifft(cross, dim=-1).real
        h, w = corr.shape[-2:]
        peak = corr.reshape(corr.shape[0], -1).argmax(dim=1)
        py = (peak // w).double()
        px = (peak % w).double()
        py = torch.where(py > h // 2, py - h, py)
        px = torch.where(px > w // 2, px - w, px)
        s = torch.stack([py, px], dim=1)
        ky1, kx1 = kyy[0, :, 0], kx[0, 0, :]
        powers_y = torch.stack([torch.ones_like(ky1), ky1, ky1 * ky1], dim=1).to(cross.dtype)  # (h, 3)
        powers_x = torch.stack([torch.ones_like(kx1), kx1, kx1 * kx1], dim=1).to(cross.dtype)  # (w, 3)
        for _ in range(newton_steps):
            # moments[p, q] = sum R ky^p kx^q exp(i k.s): the correlation's value, gradient and
            # curvature at s, by two small matrix products (the phase is separable)
            vx = _unit(kx1[None, :] * s[:, 1, None])[:, :, None] * powers_x  # (B, w, 3)
            vy = _unit(ky1[None, :] * s[:, 0, None])[:, :, None] * powers_y  # (B, h, 3)
            moments = torch.einsum("bhp,bhq->bpq", vy, torch.bmm(cross, vx))
            re, im = moments.real, moments.imag
            grad = torch.stack([-im[:, 1, 0], -im[:, 0, 1]], dim=1)
            hyy = -re[:, 2, 0]
            hxx = -re[:, 0, 2]
            hxy = -re[:, 1, 1]
            if not use_dy:
                hyy = -torch.ones_like(hyy)  # dy is fixed at 0: a unit curvature keeps its step at 0
            det = hyy * hxx - hxy * hxy
            ok = (det > 0) & (hxx < 0)
            step_y = (hxx * grad[:, 0] - hxy * grad[:, 1]) / torch.where(ok, det, torch.ones_like(det))
            step_x = (hyy * grad[:, 1] - hxy * grad[:, 0]) / torch.where(ok, det, torch.ones_like(det))
            step = -torch.stack([step_y, step_x], dim=1)
            # where the curvature is not that of a peak, or the step leaves the peak, climb gently
            step = torch.where(ok[:, None], step, torch.zeros_like(step)).clamp(-0.5, 0.5)
            s = s + step
        out[a : a + per] = s
    return out.float()


# --------------------------------------------------------------------------- methods
def xcorr_steps(projections, theta, *, device="cpu") -> Generator[Progress, None, np.ndarray]:
    """Sequential alignment: register each projection to its neighbour (all pairs in one batch),
    add up the relative shifts, remove the unobservable parts. Errors add up along the scan like
    a random walk, which is why :func:`joint_steps` exists.
    """
    proj, theta = check_stack(projections, theta)
    p = _tensor(proj)
    p = p.to(device)
    rel = register(p[1:], p[:-1]).cpu().double().numpy()
    shifts = np.concatenate([np.zeros((1, 2)), np.cumsum(rel, axis=0)])
    if p.shape[1] < 4:
        shifts[:, 0] = 0.0
    yield Progress(1, 1, "cross-correlation")
    return remove_unobservable(shifts, theta)


def _downsample(stack: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return stack
    fy = factor if stack.shape[1] >= 4 * factor else 1
    return F.avg_pool2d(stack[:, None], (fy, factor), ceil_mode=True)[:, 0] if fy > 1 else F.avg_pool1d(
        stack, factor, ceil_mode=True)


def joint_steps(
    projections,
    theta,
    *,
    center=None,
    refine_center: bool = True,
    levels: tuple[int, ...] = (4, 2, 1),
    iterations: int = 20,
    tol: float = 0.01,
    initial=None,
    filter_name: str = "shepp-logan",
    device="cpu",
    register_fn=None,
) -> Generator[Progress, None, tuple[np.ndarray, dict]]:
    """Projection-matching (joint) alignment, multi-resolution, batched.

    At each resolution level (detector binned by ``levels``) and up to ``iterations`` times:
    undo the current shifts, reconstruct all rows at once (FBP with the package's projector),
    reproject, register every projection against its reprojection (:func:`register`), add the
    result. Unobservable parts are removed after each step; with ``refine_center`` a constant
    dx (a centre offset) is kept, so the returned shifts also carry the centre correction and the
    refined centre is ``center + mean(dx)`` (in ``metadata["center_refined"]``). Stops a level
    when the largest update is below ``tol`` px (scaled to the level). ``register_fn`` replaces
    the registration (e.g. a learned predictor). Returns ``(shifts, metadata)``.
    """
    proj, theta = check_stack(projections, theta)
    p = _tensor(proj)
    p = p.to(device=device, dtype=torch.float32)
    n_angles, rows, cols = p.shape
    c0 = cols / 2.0 if center is None else float(center)
    if not 0 <= c0 <= cols:
        raise InputError(f"center={c0} lies outside the detector (0 to {cols} px)")
    shifts = np.zeros((n_angles, 2)) if initial is None else check_shifts(initial, n_angles).copy()
    levels = tuple(int(f) for f in levels if int(f) >= 1 and cols // int(f) >= 16) or (1,)
    fit_dy = rows >= 4
    total = len(levels) * iterations
    history: list[float] = []
    done = 0
    reg = register_fn or (lambda m, r: register(m, r, estimate_dy=fit_dy, passes=1))  # the loop iterates
    for level, factor in enumerate(levels):
        small = _downsample(p, factor)
        fy = rows / small.shape[1]
        scale = np.array([fy, factor], dtype=np.float64)
        c = c0 / factor
        geom = make_geometry(small.shape[-1], small.shape[-1], theta, c)
        for it in range(iterations):
            s_small = torch.from_numpy(shifts / scale).float().to(small.device)
            aligned = fourier_shift(small, -s_small)
            rec = fbp(aligned, theta, c, filter_name, circle=True, device=small.device)
            reproj = project_tensor(rec.clamp_min(0), geom)
            delta = reg(aligned, reproj).cpu().double().numpy() * scale
            if not fit_dy:
                delta[:, 0] = 0.0
            shifts = remove_unobservable(shifts + delta, theta, keep_center=refine_center)
            step = float(np.abs(remove_unobservable(delta, theta, keep_center=refine_center)).max())
            history.append(step)
            done += 1
            info = {"level": level, "update": step}
            yield Progress(done, total, f"joint alignment, level 1/{factor}", info)
            if step < tol * factor:
                break
        done = (level + 1) * iterations
    meta = {
        "center": c0,
        "center_refined": c0 + float(shifts[:, 1].mean()) if refine_center else c0,
        "updates": history,
    }
    return shifts, meta
