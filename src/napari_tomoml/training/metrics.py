"""Image-quality metrics used for validation, model cards and benchmarks.

Both compare a prediction with its ground truth on the truth's value range (``data_range`` =
max - min of the truth unless given), so numbers in different units stay comparable.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def _range(target: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    span = float(np.max(target) - np.min(target))
    return span if span > 0 else 1.0


def psnr(prediction: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB.

    >>> round(psnr(np.array([0.0, 0.9]), np.array([0.0, 1.0])), 2)
    23.01
    """
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    mse = float(np.mean((prediction - target) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(_range(target, data_range) ** 2 / mse))


def ssim(prediction: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image, 7x7 window) of a 2-D image, or the mean over a stack's slices.

    >>> img = np.random.default_rng(0).random((32, 32))
    >>> ssim(img, img)
    1.0
    """
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    r = _range(target, data_range)
    if target.ndim == 2:
        return float(structural_similarity(prediction, target, data_range=r))
    flat_p = prediction.reshape(-1, *target.shape[-2:])
    flat_t = target.reshape(-1, *target.shape[-2:])
    return float(np.mean([structural_similarity(p, t, data_range=r) for p, t in zip(flat_p, flat_t)]))
