"""Input normalisation of a model, as recorded in its card, applied before and undone after.

A card's ``normalization`` entry is one of::

    {"kind": "percentile", "percentiles": [0.5, 99.5], "range": [0.0, 1.0]}
        the volume's robust low/high values (these percentiles, over the whole volume, so every
        slice shares one mapping) go to range[0]/range[1]
    {"kind": "affine", "offset": a, "scale": s}
        fixed mapping model_value = (value - a) * s, for data already on a known scale

Either way it comes down to one affine map ``(x - offset) * scale``; the output is mapped back
with ``y / scale + offset`` so results come out in the user's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelFileError

DEFAULT_NORMALIZATION = {"kind": "percentile", "percentiles": [0.5, 99.5], "range": [0.0, 1.0]}
# percentiles come from a strided subsample of at most this many voxels: fast on big volumes
_MAX_SAMPLES = 4_000_000


@dataclass(frozen=True)
class Affine:
    """``model_value = (value - offset) * scale``; :meth:`undo` maps model output back.

    >>> a = Affine(offset=10.0, scale=0.5)
    >>> float(a.undo(a.apply(np.float32(12.0))))
    12.0
    """

    offset: float
    scale: float

    def apply(self, x):
        return (x - self.offset) * self.scale

    def undo(self, y):
        return y / self.scale + self.offset


def robust_range(volume: np.ndarray, percentiles=(0.5, 99.5)) -> tuple[float, float]:
    """Low/high percentiles of a (possibly huge) array from a strided subsample.

    >>> robust_range(np.arange(1001.0), (0, 100))
    (0.0, 1000.0)
    """
    step = max(1, int(np.ceil((volume.size / _MAX_SAMPLES) ** (1 / volume.ndim))))
    sample = np.asarray(volume[(slice(None, None, step),) * volume.ndim], dtype=np.float64)
    lo, hi = np.percentile(sample, percentiles)
    return float(lo), float(hi)


def fit_normalization(spec: dict, volume: np.ndarray) -> Affine:
    """The affine map that ``spec`` (a card's ``normalization``) gives for this volume.

    >>> fit_normalization({"kind": "percentile", "percentiles": [0, 100], "range": [0, 255]},
    ...                   np.array([2.0, 4.0]))
    Affine(offset=2.0, scale=127.5)
    """
    kind = spec.get("kind")
    if kind == "affine":
        return Affine(float(spec["offset"]), float(spec["scale"]))
    if kind == "percentile":
        r0, r1 = (float(v) for v in spec.get("range", (0.0, 1.0)))
        lo, hi = robust_range(volume, tuple(spec.get("percentiles", (0.5, 99.5))))
        # a constant volume has no spread to normalise; keep unit scale rather than divide by 0
        scale = (r1 - r0) / (hi - lo) if hi > lo else 1.0
        return Affine(offset=lo - r0 / scale, scale=scale)
    raise ModelFileError(f"model card normalization kind {kind!r} is unknown: use 'percentile' or 'affine'")
