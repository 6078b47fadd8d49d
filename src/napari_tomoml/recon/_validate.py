"""One place that checks every array a public recon function receives.

Each helper raises :class:`~napari_tomoml.errors.InputError` with a message naming the argument,
so the widget and the CLI can show it as it is.
"""

from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device
from ..errors import InputError


def as_stack(data, name: str, *, kind: str = "projections") -> tuple[np.ndarray | torch.Tensor, bool]:
    """Check a 2-D or 3-D float array; return it as 3-D and whether it was a single 2-D slice.

    ``kind`` only words the message: projections are ``(angles, rows, cols)`` (a sinogram is
    ``(angles, cols)``), volumes ``(z, y, x)`` (a slice is ``(y, x)``).
    """
    if not isinstance(data, torch.Tensor):
        try:
            data = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} is not an array: {exc}") from exc
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
            raise InputError(f"{name} must hold numbers; got dtype {data.dtype}")
    if data.dtype in (np.complex64, np.complex128, torch.complex64, torch.complex128):
        raise InputError(
            f"{name} are complex ({data.dtype}); reconstruction needs real line integrals: "
            "pass the real part, the magnitude or the phase explicitly"
        )
    layout = (
        "(angles, rows, cols) or a sinogram (angles, cols)"
        if kind == "projections"
        else "(z, y, x) or (y, x)"
    )
    if data.ndim not in (2, 3):
        raise InputError(f"{name} must be {layout}; got a {data.ndim}-D array of shape {tuple(data.shape)}")
    if 0 in data.shape:
        raise InputError(f"{name} is empty: shape {tuple(data.shape)}")
    finite = torch.isfinite(data) if isinstance(data, torch.Tensor) else np.isfinite(data)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        if bad == finite.numel() if isinstance(finite, torch.Tensor) else bad == finite.size:
            raise InputError(f"{name} is entirely NaN/inf: nothing to reconstruct")
        raise InputError(
            f"{name} has {bad} NaN/inf values (e.g. from -log of zero counts or a dead pixel); "
            "clip or replace them first"
        )
    single = data.ndim == 2
    return (data[:, None, :] if kind == "projections" else data[None]) if single else data, single


def is_lazy(data) -> bool:
    """A 3-D array-like that stays on disk until sliced (dask, h5py, zarr, memmap), not NumPy/torch.

    >>> is_lazy(np.zeros((2, 2, 2))), is_lazy(np.lib.format.open_memmap("/tmp/_lazy.npy", "w+", "f4", (2, 2, 2)))
    (False, True)
    """
    if isinstance(data, torch.Tensor) or (isinstance(data, np.ndarray) and not isinstance(data, np.memmap)):
        return False
    shape = getattr(data, "shape", None)
    return shape is not None and len(shape) == 3 and hasattr(data, "__getitem__") and hasattr(data, "dtype")


def as_theta(theta, n_angles: int | None = None) -> np.ndarray:
    """Angles in radians as float64 numpy, checked against the number of projections."""
    if isinstance(theta, torch.Tensor):
        theta = theta.detach().cpu().numpy()
    arr = np.asarray(theta, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"theta must be a non-empty 1-D array of angles in radians; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError("theta contains NaN or infinite angles")
    if n_angles is not None and arr.size != n_angles:
        raise InputError(f"theta has {arr.size} angles but the projections have {n_angles}")
    return arr


def as_center(center, n_det: int) -> float:
    """Rotation centre in detector pixels from the left edge; default: the detector middle."""
    if center is None:
        return n_det / 2.0
    try:
        value = float(center)
    except (TypeError, ValueError) as exc:
        raise InputError(f"center must be a number of detector pixels; got {center!r}") from exc
    if not (np.isfinite(value) and 0.0 <= value <= n_det):
        raise InputError(f"center={value} lies outside the detector (0 to {n_det} pixels from the left edge)")
    return value


def as_weight(value, name: str, *, positive: bool = False) -> float:
    """A finite real number >= 0 (> 0 with ``positive``): a regularisation weight or a step size.

    >>> as_weight(0.01, "tv")
    0.01
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise InputError(f"{name} must be a finite number {'>' if positive else '>='} 0; got {value}")
    return value


def check_memory(nbytes: int, what: str, hint: str) -> None:
    """Refuse an allocation that cannot fit, saying how much it needs, before trying it.

    >>> check_memory(1 << 20, "a 1 MiB volume", "use fewer rows")
    """
    import psutil

    available = psutil.virtual_memory().available
    if nbytes > available:
        raise InputError(
            f"{what} needs {nbytes / 2**30:.1f} GiB of memory but {available / 2**30:.1f} GiB are free; {hint}"
        )


def as_size(value, name: str, default: int) -> int:
    """A positive integer image or detector size."""
    if value is None:
        return default
    if int(value) != value or value < 1:
        raise InputError(f"{name}={value!r} must be a positive integer")
    return int(value)


def to_tensor(data, device) -> tuple[torch.Tensor, bool]:
    """``(tensor, was_numpy)``; numpy becomes float32 on ``device``; a tensor keeps float64 if
    it has it and, with ``device="auto"``, its own device (autograd users keep control)."""
    if isinstance(data, torch.Tensor):
        dev = data.device if device in (None, "auto") else resolve_device(device)
        dtype = data.dtype if data.dtype == torch.float64 else torch.float32
        return data.to(device=dev, dtype=dtype), False
    arr = np.ascontiguousarray(data, dtype=np.float32)
    return torch.from_numpy(arr).to(resolve_device(device)), True


def like_input(result: torch.Tensor, was_numpy: bool):
    """Give numpy back to numpy callers, a tensor to tensor callers."""
    return result.detach().cpu().numpy() if was_numpy else result
