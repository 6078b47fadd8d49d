"""Sinograms with the faults a beamline produces, to test outlier detection against known truth.

Each function takes one sinogram ``(angles, cols)`` of line integrals (``-log`` transmission) and
returns a corrupted copy; :func:`corrupted_sinogram_stack` builds a whole scan's stack of
sinograms (the rows of one porous-rock sample) with a few of them corrupted and says which.

Strengths are those of real scans, not caricatures:

- ``"zingers"``: ~0.2 % of the pixels hit by scattered X-rays / gamma rays, which add
  0.3–2 flat-field intensities of counts to one pixel (the line integral drops there).
- ``"missing-angles"``: a block of ~8 % of the frames taken with the beam off (top-up
  injection, shutter): the detector reads dark counts only.
- ``"wrong-center"``: the rotation axis 2–3 pixels off the detector middle.
- ``"stripes"``: 5 % of the detector columns with a gain error of ~1 % of the largest line
  integral (the offsets that give ring artefacts).
- ``"angular-blur"``: each frame integrates over 4 angular steps instead of one (rotation too
  fast for the exposure).

>>> stack, theta, kinds = corrupted_sinogram_stack(40, n_corrupt_each=1, size=32, n_angles=48, seed=0)
>>> stack.shape, len(theta), sorted(str(k) for k in set(kinds) if k)
((40, 48, 32), 48, ['angular-blur', 'missing-angles', 'stripes', 'wrong-center', 'zingers'])
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .dose import simulate_counts
from .phantom import porous_rock

KINDS = ("zingers", "missing-angles", "wrong-center", "stripes", "angular-blur")
# largest line integral of the simulated sample: ~8 % transmission through the thickest part
_MAX_LINE_INTEGRAL = 2.5


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def add_zingers(sino, *, fraction: float = 0.002, seed=None) -> np.ndarray:
    """Bright single-pixel hits: ``fraction`` of the pixels get 0.3–2 open-beam intensities of extra counts.

    >>> s = add_zingers(np.ones((90, 64), np.float32), seed=0)
    >>> int((s < 1).sum()) > 0
    True
    """
    p = np.array(sino, dtype=np.float64)
    rng = _rng(seed)
    hit = rng.random(p.shape) < fraction
    extra = rng.uniform(0.3, 2.0, size=int(hit.sum()))
    p[hit] = -np.log(np.exp(-p[hit]) + extra)
    return p.astype(np.float32)


def drop_angles(sino, *, fraction: float = 0.08, i0: float = 1e4, seed=None) -> np.ndarray:
    """A contiguous block of ``fraction`` of the frames recorded with the beam off (dark counts).

    >>> s = drop_angles(np.zeros((100, 8), np.float32), seed=0)
    >>> int((s > 5).all(axis=1).sum())
    8
    """
    p = np.array(sino, dtype=np.float32)
    rng = _rng(seed)
    n = max(1, round(fraction * len(p)))
    start = int(rng.integers(0, len(p) - n + 1))
    dark = np.maximum(rng.poisson(2.0, size=p[start : start + n].shape), 1.0)  # dark current
    p[start : start + n] = -np.log(dark / i0)
    return p


def add_gain_stripes(sino, *, fraction: float = 0.05, strength: float = 0.01, seed=None) -> np.ndarray:
    """Offsets on ``fraction`` of the columns (at least one) of 0.5–1.5 ``strength`` × the largest value.

    Like :func:`~napari_tomoml.sim.add_stripes` but with a guaranteed number of stripes and no
    near-zero offsets, so a test knows the sinogram really is corrupted.

    >>> s = add_gain_stripes(np.ones((90, 64), np.float32), seed=0)
    >>> int((s != 1).any(axis=0).sum())
    3
    """
    p = np.array(sino, dtype=np.float32)
    rng = _rng(seed)
    cols = rng.choice(p.shape[1], size=max(1, round(fraction * p.shape[1])), replace=False)
    scale = float(np.abs(p).max()) or 1.0
    offsets = rng.uniform(0.5, 1.5, len(cols)) * rng.choice([-1, 1], len(cols)) * strength * scale
    p[:, cols] += offsets.astype(np.float32)
    return p


def blur_angles(transmission, *, steps: int = 4) -> np.ndarray:
    """Average transmission over ``steps`` neighbouring angles (a frame exposed over a wider arc).

    Works on transmission, not line integrals, since the detector sums photons. The sinogram
    wraps at 180° with the detector mirrored, which the edge handling follows.

    >>> t = np.zeros((10, 4)); t[5] = 1.0
    >>> blur_angles(t, steps=2)[:, 0].tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0]
    """
    t = np.asarray(transmission, dtype=np.float64)
    # p(theta + pi, s) = p(theta, -s): pad with the mirrored rows of the other end
    pad = steps
    ext = np.concatenate([t[-pad:, ::-1], t, t[:pad, ::-1]], axis=0)
    return ndimage.uniform_filter1d(ext, steps, axis=0)[pad:-pad]


def corrupted_sinogram_stack(
    n: int = 500,
    *,
    n_corrupt_each: int = 2,
    size: int = 64,
    n_angles: int = 90,
    i0: float = 3e4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` noisy sinograms of one porous-rock sample, ``n_corrupt_each`` of each fault in :data:`KINDS`.

    Returns ``(stack, theta, kinds)``: float32 ``(n, n_angles, size)`` line integrals, angles in
    radians over [0, π), and a string array naming each item's fault (``""`` for clean ones).
    The corrupted items sit at random positions. ``i0`` photons per pixel set the noise.

    >>> stack, theta, kinds = corrupted_sinogram_stack(30, n_corrupt_each=1, size=32, n_angles=40)
    >>> int((kinds != "").sum())
    5
    """
    from ..recon import project

    n_bad = n_corrupt_each * len(KINDS)
    if n < 2 * n_bad or n_corrupt_each < 0:
        raise InputError(f"a stack of {n} sinograms cannot hold {n_bad} corrupted ones and stay mostly clean")
    rng = _rng(seed)
    volume = porous_rock(size, n, seed=rng)
    theta = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    clean = project(volume, theta, device="cpu").transpose(1, 0, 2)  # (n, angles, cols)
    scale = _MAX_LINE_INTEGRAL / float(clean.max())
    clean *= scale
    kinds = np.full(n, "", dtype=object)
    bad = rng.choice(n, size=n_bad, replace=False)
    for i, index in enumerate(bad):
        kinds[index] = KINDS[i % len(KINDS)]
    stack = np.empty_like(clean)
    for i in range(n):
        kind = kinds[i]
        p = clean[i]
        if kind == "wrong-center":
            offset = rng.uniform(2.0, 3.0) * rng.choice([-1, 1])
            p = scale * project(volume[i], theta, center=size / 2 + offset, device="cpu")
        elif kind == "angular-blur":
            p = -np.log(blur_angles(np.exp(-p.astype(np.float64)), steps=4))
        p = simulate_counts(p, i0=i0, rng=rng)  # photon noise on what the detector saw
        if kind == "zingers":
            p = add_zingers(p, seed=rng)
        elif kind == "missing-angles":
            p = drop_angles(p, i0=i0, seed=rng)
        elif kind == "stripes":
            p = add_gain_stripes(p, fraction=0.05, strength=0.02, seed=rng)
        stack[i] = p
    return stack, theta, kinds.astype(str)
