"""What a real scan does to ideal projections: photon noise, fewer angles, detector stripes.

All functions take and return float32 numpy line integrals (the ``-log`` of transmission), in the
``(angles, rows, cols)`` layout or a single ``(angles, cols)`` sinogram.

>>> import numpy as np
>>> clean = np.full((90, 4, 32), 0.5, dtype=np.float32)
>>> noisy = simulate_counts(clean, i0=1e3, rng=0)
>>> bool(abs(noisy.mean() - 0.5) < 0.01)
True
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def _as_line_integrals(projections, name: str = "projections") -> np.ndarray:
    arr = np.asarray(projections, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise InputError(f"{name} must be (angles, cols) or (angles, rows, cols); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contain NaN or infinite values")
    return arr


def simulate_counts(
    line_integrals,
    i0: float,
    rng: int | np.random.Generator | None = None,
    *,
    min_counts: float = 1.0,
) -> np.ndarray:
    """Noisy line integrals from a Poisson count of ``i0`` incident photons per detector pixel.

    Counts ``~ Poisson(i0 * exp(-p))`` are clipped at ``min_counts`` before ``-log(counts / i0)``,
    because a pixel that saw no photon would otherwise give an infinite line integral (a real
    detector's dark-corrected zero is treated the same way). Lower ``i0`` means lower dose.

    >>> import numpy as np
    >>> simulate_counts(np.zeros((2, 3), np.float32), i0=1e6, rng=1).shape
    (2, 3)
    """
    p = _as_line_integrals(line_integrals, "line_integrals")
    if not i0 > 0:
        raise InputError(f"incident photons i0={i0!r} must be positive")
    rng = np.random.default_rng(rng)
    counts = rng.poisson(i0 * np.exp(-p.astype(np.float64))).astype(np.float64)
    np.maximum(counts, min_counts, out=counts)
    return (-np.log(counts / i0)).astype(np.float32)


def sparse_angles(theta, step: int, projections=None):
    """Keep every ``step``-th angle: a sparse-view scan from a dense one.

    Returns the kept angles, or ``(angles, projections)`` when projections are given.

    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 180, endpoint=False)
    >>> sparse_angles(theta, 4).shape
    (45,)
    """
    if int(step) != step or step < 1:
        raise InputError(f"angle step={step!r} must be a positive integer")
    theta = np.asarray(theta)
    if projections is None:
        return theta[::step]
    if len(projections) != len(theta):
        raise InputError(f"theta has {len(theta)} angles but projections have {len(projections)}")
    return theta[::step], projections[::step]


def add_stripes(
    projections,
    fraction: float = 0.05,
    strength: float = 0.05,
    *,
    seed: int | np.random.Generator | None = None,
    dead_fraction: float = 0.0,
) -> np.ndarray:
    """Add detector-pixel gain errors: constant offsets over all angles, i.e. rings after recon.

    ``fraction`` of the detector columns get an offset of random sign and typical size
    ``strength`` times the largest line integral (a miscalibrated gain adds ``-log(gain)`` to every
    projection). Offsets vary slowly along the rows, as they do on scintillator-camera detectors.
    ``dead_fraction`` of the columns are set to the projection maximum (a dead pixel that
    always reads dark) instead.

    >>> import numpy as np
    >>> sino = np.zeros((180, 64), np.float32); sino[:, 16:48] = 1.0
    >>> striped = add_stripes(sino, fraction=0.1, seed=0)
    >>> offset = striped - sino
    >>> bool((offset == offset[0]).all())   # the same offset at every angle
    True
    """
    p = _as_line_integrals(projections)
    rng = np.random.default_rng(seed)
    single = p.ndim == 2
    p3 = p[:, None, :] if single else p
    _, rows, cols = p3.shape
    scale = float(np.abs(p3).max()) or 1.0
    hit = rng.random(cols) < fraction
    amplitude = rng.normal(0.0, strength * scale, size=cols) * hit
    along_rows = 1.0 + 0.3 * np.sin(np.linspace(0, np.pi, rows)[:, None] * rng.uniform(0.5, 2, size=cols))
    out = p3 + (amplitude[None, :] * along_rows)[None].astype(np.float32)
    dead = rng.random(cols) < dead_fraction
    out[:, :, dead] = scale
    return out[:, 0, :] if single else out
