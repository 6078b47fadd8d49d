"""Input checks shared by every slice-by-slice inference task (denoise, segment)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

MIN_SIDE = 8


def check_slices(data: Any, *, what: str = "volume", purpose: str = "process") -> Any:
    """A (z, y, x) stack from a 2-D image or 3-D volume: NumPy as is, lazy arrays (dask, zarr,
    h5py, memmap) kept lazy. In-memory data is checked for NaN/inf here; lazy data should be
    checked slice by slice with :func:`check_finite` as it is read, so memory stays bounded.

    >>> check_slices(np.zeros((16, 16), np.float32)).shape
    (1, 16, 16)
    """
    if not (hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__")):
        try:
            data = np.asarray(data)
        except Exception as exc:  # e.g. a ragged list
            raise InputError(f"{what} must be an array, got {type(data).__name__}") from exc
    if np.dtype(data.dtype).kind not in "uif":
        raise InputError(f"{what} must hold real numbers, got dtype {data.dtype}")
    if len(data.shape) == 2:
        data = np.asarray(data)[None]
    if len(data.shape) != 3:
        raise InputError(f"{what} must be a 2-D slice (y, x) or a 3-D volume (z, y, x), got shape {tuple(data.shape)}")
    if 0 in tuple(data.shape):
        raise InputError(f"{what} is empty: shape {tuple(data.shape)}")
    if min(data.shape[1:]) < MIN_SIDE:
        raise InputError(f"slices of shape {tuple(data.shape[1:])} are too small to {purpose}: "
                         f"need at least {MIN_SIDE} x {MIN_SIDE}")
    if isinstance(data, np.ndarray):
        check_finite(data, what, purpose)
    return data


def check_finite(array: np.ndarray, what: str, purpose: str = "process") -> None:
    """Refuse NaN/inf, naming ``what`` (e.g. ``"slice z=3"``)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{what} contains NaN or infinite values; replace them (e.g. np.nan_to_num) before you {purpose}")
