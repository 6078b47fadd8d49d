"""Display helpers that never read a whole (possibly lazy) volume."""

from __future__ import annotations

from typing import Any

import numpy as np


def estimate_contrast_limits(
    array: Any, sample: int = 5, percentiles: tuple[float, float] = (0.5, 99.5)
) -> tuple[float, float]:
    """Robust display range from ``sample`` frames spread along the first axis.

    Only those frames are read, so a lazy (dask, memmap, HDF5) volume of any size costs a few
    frames; napari would otherwise compute limits from the whole array. NaN and inf are ignored.

    >>> import numpy as np
    >>> estimate_contrast_limits(np.arange(1000.0).reshape(10, 10, 10), percentiles=(0, 100))
    (0.0, 999.0)
    """
    if array.ndim < 3:
        frames = np.asarray(array)
    else:
        n = array.shape[0]
        idx = np.unique(np.linspace(0, n - 1, max(1, min(sample, n))).round().astype(int))
        frames = np.stack([np.asarray(array[int(i)]) for i in idx])
    values = frames[np.isfinite(frames)] if frames.dtype.kind == "f" else frames.ravel()
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if hi <= lo:  # a constant image still needs a non-empty range
        hi = lo + 1.0
    return (lo, hi)
