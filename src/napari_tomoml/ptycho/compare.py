"""Comparing retrieved phases with the truth: the global phase offset is removed first.

A far-field measurement cannot see a constant phase added to the whole object, so ePIE (and a
network) may return the object times ``exp(1j * c)``; scores are taken after removing ``c``.
"""

from __future__ import annotations

import numpy as np

from ..training.metrics import psnr, ssim


def align_phase(phase: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``phase`` minus its mean (circular) offset from ``reference`` inside ``mask``.

    >>> ref = np.linspace(0, 1, 10)
    >>> np.allclose(align_phase(ref + 0.3, ref), ref)
    True
    """
    phase, reference = np.asarray(phase, np.float64), np.asarray(reference, np.float64)
    sel = np.ones(phase.shape, bool) if mask is None else np.asarray(mask, bool)
    offset = np.angle(np.mean(np.exp(1j * (phase[sel] - reference[sel]))))
    return (phase - offset).astype(np.float32)


def phase_scores(phase: np.ndarray, reference: np.ndarray, region: tuple[slice, slice] | None = None) -> dict[str, float]:
    """SSIM, PSNR and mean absolute error (rad) of ``phase`` against ``reference`` in ``region``, offset removed.

    The data range is the reference's in the region.

    >>> ref = np.random.default_rng(0).random((32, 32))
    >>> phase_scores(ref + 1.0, ref)["mae"] < 1e-6
    True
    """
    region = region or (slice(None), slice(None))
    p, r = np.asarray(phase)[region], np.asarray(reference)[region]
    p = align_phase(p, r)
    return {"ssim": ssim(p, r), "psnr": psnr(p, r), "mae": float(np.mean(np.abs(p - r)))}
