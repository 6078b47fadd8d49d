"""Finding the rotation centre, and a stack of trial slices to check it by eye.

Results use tomopy's convention (see :mod:`napari_tomoml.recon.geometry`): the axis position in
detector pixels from the left edge, ``n_det / 2`` when it sits in the middle.

Two methods:

- ``"vo"`` (Vo, Atwood & Drakopoulos, Opt. Express 22, 19078 (2014)): mirror the 180° sinogram,
  append it to make a 360° sinogram for a trial centre, and measure the Fourier energy outside
  the double wedge that a consistent sinogram occupies. The true centre minimises it. Coarse
  to fine as tomopy's: every candidate on a sinogram binned to ~256 columns, a few around the
  best on each finer level, then a parabola through the best three half-pixel steps (timed in
  benchmarks/bench_all.py).
- ``"phase"``: phase correlation between the projection at ``theta0`` and the mirrored one at
  ``theta0 + 180°``; their shift is twice the axis offset. Needs such a pair of angles.

>>> import numpy as np
>>> from napari_tomoml.recon import project
>>> from napari_tomoml.sim.phantom import shepp_logan_3d
>>> theta = np.linspace(0, np.pi, 181)
>>> proj = project(shepp_logan_3d(64, 3), theta, center=30.3, device="cpu")
>>> round(find_center(proj, theta), 1)
30.3
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft
import torch
from scipy import ndimage

from ..errors import InputError
from . import _validate as v
from .fbp import circle_mask, fbp

METHODS = ("vo", "phase")
# Detector width at which the coarse centre search starts (a pyramid of 2x binnings gets there),
# and the fewest angles a binned level keeps.
_COARSE_COLUMNS = 256
_MIN_ANGLES = 32


def _edge_padded(rows: np.ndarray, shift) -> tuple[np.ndarray, int]:
    """``rows`` padded with edge values along the last axis, wide enough for ``shift``; the pad."""
    n = rows.shape[-1]
    pad = max(n // 2, int(np.ceil(np.abs(shift).max())) + 1)
    return np.pad(rows, [(0, 0)] * (rows.ndim - 1) + [(pad, pad)], mode="edge"), pad


def _fourier_shift(rows: np.ndarray, shift: np.ndarray | float) -> np.ndarray:
    """Shift 1-D signals (last axis) right by sub-pixel amounts, edge-padded so nothing wraps round.

    ``shift`` broadcasts against ``rows.shape[:-1]``. Float32 in, float32 out (half the time).
    """
    shift = np.asarray(shift, dtype=np.float64)
    n = rows.shape[-1]
    padded, pad = _edge_padded(rows, shift)
    freq = np.fft.rfftfreq(padded.shape[-1])
    phase = np.exp(-2j * np.pi * freq * shift[..., None]).astype(np.result_type(rows.dtype, np.complex64))
    return sfft.irfft(sfft.rfft(padded, axis=-1) * phase, n=padded.shape[-1], axis=-1)[..., pad : pad + n]


def _whole_shift_metric(sino: np.ndarray, shifts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`_fourier_metric` for whole-pixel shifts, in a fraction of the transforms.

    The transform along the angles is linear and a whole-pixel shift only picks columns, so the
    angles are transformed once for all trials (the costly part: ``2 * angles`` is rarely a fast
    FFT length) and each trial needs just its transform along the detector.
    """
    n_angles, n = sino.shape
    padded, pad = _edge_padded(sino[:, ::-1], shifts)
    # only the columns some trial reads: a few around the detector when refining a centre
    lo, hi = pad - int(shifts.max()), pad - int(shifts.min()) + n
    first = sfft.fft(sino, n=2 * n_angles, axis=0)
    second = sfft.fft(padded[:, lo:hi], n=2 * n_angles, axis=0)
    second[1::2] *= -1  # the mirrored half starts at row n_angles: a factor (-1)^k
    metric = np.empty(len(shifts))
    block = np.empty((min(16, len(shifts)), 2 * n_angles, n), dtype=first.dtype)
    for i in range(0, len(shifts), 16):
        part = shifts[i : i + 16].astype(int)
        for j, shift in enumerate(part):
            np.add(first, second[:, pad - lo - shift : pad - lo - shift + n], out=block[j])
        spectrum = np.abs(sfft.fft(block[: len(part)], axis=-1, overwrite_x=True)[..., : n // 2 + 1])
        metric[i : i + len(part)] = np.tensordot(spectrum, mask, axes=2) / mask.size
    return metric


def _wedge_mask(n_rows: int, n_cols: int, radius: float, drop: int) -> np.ndarray:
    """Where a consistent 360° sinogram has no energy, in ``rfft2`` columns and fftshifted rows.

    An object within ``radius`` pixels of the axis makes a sinogram whose angular frequency ``k``
    (cycles per turn) and detector frequency ``f`` (cycles per pixel) satisfy |k| <= 2 pi radius |f|;
    the mask is the rest, without the lowest ``drop`` angular frequencies and the lowest detector
    frequencies (where even a consistent sinogram leaks). Columns that stand for two frequencies
    of the full spectrum (+f and -f) count twice.
    """
    k = np.arange(n_rows)[:, None] - n_rows // 2
    f = np.fft.rfftfreq(n_cols)[None, :]
    mask = (np.abs(k) > 2 * np.pi * radius * f).astype(np.float64)
    mask[n_rows // 2 - drop : n_rows // 2 + drop + 1, :] = 0.0
    mask[:, :2] = 0.0
    mask[:, 1 : (n_cols + 1) // 2] *= 2.0
    return mask


def _half_turn(theta: np.ndarray) -> np.ndarray:
    """Indices of the angles within the first half turn from the first angle, sorted by angle."""
    rel = np.mod(theta - theta.min(), 2 * np.pi)
    keep = np.flatnonzero(rel < np.pi - 1e-9)
    return keep[np.argsort(rel[keep])]


def _fourier_metric(sino: np.ndarray, shifts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Energy outside the double wedge of ``[sino; flipped sino shifted right by each shift]``."""
    metric = []
    for i in range(0, len(shifts), 16):  # bounds the memory
        flipped = np.broadcast_to(sino[:, ::-1], (len(shifts[i : i + 16]), *sino.shape))
        mirrored = _fourier_shift(flipped, shifts[i : i + 16, None])
        full = np.concatenate([np.broadcast_to(sino, mirrored.shape), mirrored], axis=1)
        metric.append(np.tensordot(np.abs(sfft.rfft2(full)), mask, axes=2) / mask.size)
    return np.concatenate(metric)


def _scan_metric(sino: np.ndarray, centers: np.ndarray, ratio: float, drop: int) -> np.ndarray:
    """Vo's metric at each trial centre (left-edge pixel convention): mirroring the sinogram about
    a centre = flipping it about the detector middle, then shifting it."""
    sino = sino.astype(np.float32)  # float32 transforms: half the time, the same centre to 1e-4 px
    # the mask in rfft2's own row order, so the spectra need no fftshift
    mask = _wedge_mask(2 * sino.shape[0], sino.shape[1], 0.5 * ratio * sino.shape[1], drop)
    mask = np.fft.ifftshift(mask, axes=0).astype(np.float32)
    shifts = 2 * (centers - sino.shape[1] / 2)
    whole = np.all(shifts == np.round(shifts))
    return (_whole_shift_metric if whole else _fourier_metric)(sino, shifts, mask)


def _halved(sino: np.ndarray) -> np.ndarray:
    """The sinogram binned 2x along the detector and along the angles (means of pairs).

    Halving both keeps the double wedge where it was: an object of half the width in pixels
    needs half the angular frequencies.
    """
    a, n = sino.shape[0] // 2 * 2, sino.shape[1] // 2 * 2
    return sino[:a, :n].reshape(a // 2, 2, n // 2, 2).mean(axis=(1, 3))


def _fewer_angles(sino: np.ndarray) -> np.ndarray:
    """Pairs of angles averaged while there are twice as many angles as columns: the double wedge
    of an object as wide as the detector spans fewer angular frequencies than that."""
    while sino.shape[0] >= 2 * max(sino.shape[1], _MIN_ANGLES):
        a = sino.shape[0] // 2 * 2
        sino = sino[:a].reshape(a // 2, 2, -1).mean(axis=1)
    return sino


def _find_center_vo(sino: np.ndarray, search: tuple[float, float], ratio: float, drop: int) -> float:
    sino = ndimage.gaussian_filter(sino, (2, 0.5), mode="reflect")  # noise along angles hides the wedge
    # Coarse to fine, as tomopy's find_center_vo: a pyramid of halved sinograms down to
    # _COARSE_COLUMNS columns. On a sinogram binned b times, whole-pixel shifts of the mirrored copy
    # are centres b/2 pixels apart (cheap: see _scan_metric); the coarsest level tries every one in
    # the search range, each finer level a few around the best.
    levels = [_fewer_angles(sino)]
    while levels[-1].shape[1] > _COARSE_COLUMNS and levels[-1].shape[0] >= 4 * _MIN_ANGLES:
        levels.append(_fewer_angles(_halved(levels[-1])))
    best = None
    for depth in range(len(levels) - 1, -1, -1):
        b = 2.0**depth
        step = b / 2
        if best is None:
            trials = np.arange(np.ceil(search[0] / step) * step, search[1] + 1e-9, step)
            if trials.size == 0:  # a search range narrower than a step
                trials = np.array([0.5 * (search[0] + search[1])])
        else:
            trials = np.round(best / step) * step + step * np.arange(-2, 3)
            trials = trials[(trials >= search[0]) & (trials <= search[1])]
        metric = _scan_metric(levels[depth], trials / b, ratio, drop)
        i = int(np.argmin(metric))
        best = trials[i]
    # Sub-pixel: a parabola through the best three half-pixel trials at full resolution
    if 0 < i < len(trials) - 1:
        best += _parabola_offset(metric[i - 1 : i + 2]) * step
    return float(best)


def _parabola_offset(three: np.ndarray) -> float:
    """Sub-sample position of the extremum of a parabola through three equally spaced values."""
    denom = three[0] - 2 * three[1] + three[2]
    return 0.0 if denom == 0 else float(np.clip(0.5 * (three[0] - three[2]) / denom, -0.5, 0.5))


def _find_center_phase(proj: np.ndarray, theta: np.ndarray, tolerance: float) -> float:
    from skimage.registration import phase_cross_correlation

    first = int(np.argmin(theta))
    gap = np.abs(np.mod(theta - theta[first], 2 * np.pi) - np.pi)
    second = int(np.argmin(gap))
    if gap[second] > tolerance:
        raise InputError(
            "the phase-correlation centre needs two projections 180° apart; the closest pair is "
            f"{math.degrees(np.pi - gap[second]):.2f}° apart — use method='vo'"
        )
    n_det = proj.shape[-1]
    a = proj[first]
    b = proj[second][..., ::-1]
    # b(u) = a(u + s) with s = 2 * center - n_det: b is a moved left by s, and
    # phase_cross_correlation reports the move that brings b back onto a, +s.
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=100, normalization=None)
    return float((n_det + shift[-1]) / 2)


def find_center(
    projections,
    theta,
    *,
    method: str = "vo",
    row: int | None = None,
    search: tuple[float, float] | None = None,
    ratio: float = 0.5,
    drop: int = 10,
    tolerance: float = math.radians(0.5),
) -> float:
    """Rotation centre in detector pixels from the left edge (tomopy's convention).

    ``projections`` ``(angles, rows, cols)`` or a sinogram ``(angles, cols)``, normalised
    (``-log``). ``method="vo"`` (default) uses the sinogram of ``row`` (default: the middle row)
    over a half turn and searches ``search = (lowest, highest)`` centres (default: the middle half
    of the detector); ``ratio`` is the object's width over the detector's, ``drop`` the lowest
    angular frequencies left out. ``method="phase"`` registers the projections at ``theta0`` and
    ``theta0 + 180°`` (within ``tolerance`` radians) over all rows.

    >>> import numpy as np
    >>> from napari_tomoml.recon import project
    >>> theta = np.linspace(0, np.pi, 181)
    >>> sino = project(np.pad(np.ones((8, 8), np.float32), 28), theta, center=33.0, device="cpu")
    >>> round(find_center(sino, theta, method="phase"), 1)
    33.0
    """
    proj, _ = v.as_stack(projections, "projections")
    if isinstance(proj, torch.Tensor):
        proj = proj.detach().cpu().numpy()
    proj = np.asarray(proj, dtype=np.float64)
    n_angles, n_rows, n_det = proj.shape
    theta = v.as_theta(theta, n_angles)
    if method not in METHODS:
        raise InputError(f"unknown centre method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "phase":
        return _find_center_phase(proj, theta, tolerance)
    row = n_rows // 2 if row is None else row
    if not 0 <= row < n_rows:
        raise InputError(f"row={row} is outside the projections' {n_rows} rows")
    lo, hi = search if search is not None else (n_det / 4, 3 * n_det / 4)
    if not 0 <= lo < hi <= n_det:
        raise InputError(f"search={search!r} must be (lowest, highest) centres within 0..{n_det}")
    half = _half_turn(theta)
    if len(half) < 8:
        raise InputError(f"the centre search needs at least 8 angles over a half turn; got {len(half)}")
    return _find_center_vo(proj[half, row, :], (lo, hi), ratio, drop)


def center_stack(
    projections, theta, centers, *, row: int | None = None, filter_name: str = "ramp", device="auto"
):
    """FBP slices of one row at several trial centres, ``(len(centers), n, n)``, to compare by eye.

    All centres share one geometry: each copy of the sinogram is shifted so its trial axis lands
    in the middle of a padded detector, which makes the whole stack a single batched FBP.

    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> center_stack(np.ones((90, 2, 32), np.float32), theta, [15.5, 16.0, 16.5], device="cpu").shape
    (3, 32, 32)
    """
    proj, _ = v.as_stack(projections, "projections")
    if isinstance(proj, torch.Tensor):
        proj = proj.detach().cpu().numpy()
    n_angles, n_rows, n_det = proj.shape
    theta = v.as_theta(theta, n_angles)
    centers = np.atleast_1d(np.asarray(centers, dtype=np.float64))
    for c in centers:
        v.as_center(c, n_det)
    row = n_rows // 2 if row is None else row
    if not 0 <= row < n_rows:
        raise InputError(f"row={row} is outside the projections' {n_rows} rows")
    margin = int(math.ceil(np.abs(centers - n_det / 2).max())) + 1
    sino = np.pad(np.asarray(proj[:, row, :], dtype=np.float32), ((0, 0), (margin, margin)))
    # move each trial axis to the middle of the padded detector
    stack = _fourier_shift(np.broadcast_to(sino, (len(centers), *sino.shape)), (n_det / 2 - centers)[:, None])
    stack = np.ascontiguousarray(stack.transpose(1, 0, 2))
    slices = fbp(stack, theta, filter_name=filter_name, n=n_det, device=device)
    return slices * circle_mask(n_det)
