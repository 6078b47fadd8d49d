"""Misaligned projection stacks with known truth, like the 3-D CNN alignment notebook's.

A real stage wobbles: each projection is shifted by ``(dy, dx)`` pixels (slow drift plus jitter,
x larger than y), may be tilted a little, is noisy and sits on a drifting background. The
convention everywhere in napari-tomoml is

    measured = scipy.ndimage.shift(aligned, (dy, dx))

so ``shifts[i] = (dy, dx)`` moves projection ``i`` down by ``dy`` and right by ``dx``.

Projections are made of a taller phantom than the detector shows and cropped after shifting, so
rows that a vertical shift brings into view hold real object, as in a real scan, and the
detector is wider than the object, so horizontal shifts never move it out of view.

>>> stack = simulate_misaligned(n=32, rows=8, n_angles=45, sigma_x=2, seed=0)
>>> stack.projections.shape, stack.shifts.shape
((45, 8, 48), (45, 2))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .dose import simulate_counts
from .phantom import make_phantom


@dataclass
class MisalignedStack:
    """A simulated scan: measured ``projections`` (angles, rows, cols) line integrals, the
    noise-free ``aligned`` truth, ``theta`` (radians), ``shifts`` (angles, 2) = (dy, dx) px,
    ``tilts`` (degrees), the phantom rows in view ``volume`` (rows, n_det, n_det) and ``center``."""

    projections: np.ndarray
    aligned: np.ndarray
    theta: np.ndarray
    shifts: np.ndarray
    tilts: np.ndarray
    volume: np.ndarray
    center: float


def _smooth_unit(n: int, rng: np.random.Generator, length: float) -> np.ndarray:
    """Zero-mean, unit-variance random curve correlated over ``length`` samples (the drift)."""
    walk = ndimage.gaussian_filter1d(rng.standard_normal(n + 4 * int(length)), length, mode="reflect")
    walk = walk[2 * int(length) : 2 * int(length) + n]
    walk = walk - walk.mean()
    return walk / (walk.std() + 1e-12)


def random_shifts(
    n_angles: int,
    *,
    sigma_x: float = 4.0,
    sigma_y: float = 1.0,
    drift: float = 0.5,
    drift_length: float = 10.0,
    rng: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Per-projection shifts ``(n_angles, 2)`` = (dy, dx) px: slow drift plus jitter.

    Each axis has standard deviation ``sigma_y`` / ``sigma_x``; a fraction ``drift`` of its
    variance is a smooth curve correlated over ``drift_length`` projections, the rest is
    independent jitter.

    >>> s = random_shifts(2000, sigma_x=4, sigma_y=1, rng=0)
    >>> s.shape, round(float(s[:, 1].std())), round(float(s[:, 0].std()))
    ((2000, 2), 4, 1)
    """
    if int(n_angles) != n_angles or n_angles < 2:
        raise InputError(f"n_angles={n_angles!r} must be an integer of at least 2")
    if not 0.0 <= drift <= 1.0:
        raise InputError(f"drift={drift!r} is a fraction of the variance, in [0, 1]")
    rng = np.random.default_rng(rng)
    out = np.empty((int(n_angles), 2))
    for axis, sigma in enumerate((sigma_y, sigma_x)):
        slow = _smooth_unit(int(n_angles), rng, drift_length)
        jitter = rng.standard_normal(int(n_angles))
        out[:, axis] = sigma * (np.sqrt(drift) * slow + np.sqrt(1.0 - drift) * jitter)
    return out


def shift_projections(projections, shifts, *, order: int = 3, mode: str = "constant") -> np.ndarray:
    """``scipy.ndimage.shift`` of each projection by its ``(dy, dx)``: the misalignment itself.

    >>> img = np.zeros((1, 9, 9), np.float32); img[0, 4, 4] = 1
    >>> out = shift_projections(img, [[1, 2]], order=1)
    >>> np.argwhere(out[0] == out[0].max()).tolist()
    [[5, 6]]
    """
    proj = np.asarray(projections, dtype=np.float32)
    shifts = np.asarray(shifts, dtype=np.float64)
    if proj.ndim != 3 or shifts.shape != (proj.shape[0], 2):
        raise InputError(
            f"need projections (angles, rows, cols) and shifts (angles, 2); got {proj.shape}, {shifts.shape}"
        )
    return np.stack([ndimage.shift(p, s, order=order, mode=mode) for p, s in zip(proj, shifts)])


def simulate_misaligned(
    n: int = 64,
    rows: int = 32,
    n_angles: int = 180,
    *,
    family: str = "ellipsoids",
    sigma_x: float = 4.0,
    sigma_y: float = 1.0,
    drift: float = 0.5,
    tilt_deg: float = 0.0,
    i0: float | None = None,
    background: float = 0.0,
    max_attenuation: float = 2.0,
    full_turn: bool = False,
    shifts=None,
    seed: int | None = None,
) -> MisalignedStack:
    """A misaligned scan of a generated 3-D phantom, with its truth.

    ``n``: phantom width (the detector is ``1.5 * n`` wide, wider where a shift needs it);
    ``rows``: detector rows; ``n_angles`` over 180° (360° with ``full_turn``). Shifts from
    :func:`random_shifts` with ``sigma_x``/``sigma_y``/``drift`` unless given (the same ``seed``
    with other ``shifts``, e.g. zeros, gives the same phantom and tilts: an aligned twin).
    ``tilt_deg``: standard deviation of in-plane projection tilts; ``i0``: photons per pixel for
    Poisson noise (None: noise-free);
    ``background``: standard deviation of a slowly drifting per-projection offset of the line
    integrals (flat-field drift); ``max_attenuation`` scales the phantom so its thickest line
    integral has that value.

    >>> s = simulate_misaligned(n=32, rows=8, n_angles=30, sigma_x=1, i0=1e4, seed=1)
    >>> bool(np.abs(s.projections - s.aligned).max() > 0.1), s.center
    (True, 24.0)
    """
    rng = np.random.default_rng(seed)
    drawn = random_shifts(n_angles, sigma_x=sigma_x, sigma_y=sigma_y, drift=drift, rng=rng)
    # drawn either way, so the same seed with given shifts (e.g. zeros) gives the same sample and noise
    shifts = drawn if shifts is None else np.asarray(shifts, dtype=np.float64)
    if shifts.shape != (n_angles, 2):
        raise InputError(f"shifts must be (n_angles, 2) = ({n_angles}, 2); got {shifts.shape}")
    reach = np.maximum(np.abs(drawn).max(0), np.abs(shifts).max(0))
    margin = int(np.ceil(reach[0])) + 3
    vol = make_phantom(family, n, rows + 2 * margin, seed=rng)
    pad = max(n // 4, int(np.ceil(reach[1])) + 2)  # the object never leaves the detector
    vol = np.pad(vol, ((0, 0), (pad, pad), (pad, pad)))
    n_det = vol.shape[-1]
    end = 2 * np.pi if full_turn else np.pi
    theta = np.linspace(0, end, n_angles, endpoint=False)

    from ..recon.projector import project

    tall = project(vol, theta, device="cpu")
    scale = max_attenuation / max(float(tall.max()), 1e-12)
    tall *= scale
    tilts = rng.normal(0.0, tilt_deg, n_angles) if tilt_deg > 0 else np.zeros(n_angles)
    moved = tall
    if tilt_deg > 0:
        moved = np.stack(
            [ndimage.rotate(p, t, reshape=False, order=3, mode="constant") for p, t in zip(tall, tilts)]
        )
    moved = shift_projections(moved, shifts)
    view = slice(margin, margin + rows)
    measured = moved[:, view]
    if background > 0:
        offset = background * _smooth_unit(n_angles, rng, 5.0)
        measured = measured + offset[:, None, None].astype(np.float32)
    if i0 is not None:
        measured = simulate_counts(measured, i0, rng)
    return MisalignedStack(
        projections=np.ascontiguousarray(measured, dtype=np.float32),
        aligned=np.ascontiguousarray(tall[:, view], dtype=np.float32),
        theta=theta,
        shifts=shifts,
        tilts=tilts,
        volume=np.ascontiguousarray(vol[view] * scale, dtype=np.float32),
        center=n_det / 2.0,
    )
