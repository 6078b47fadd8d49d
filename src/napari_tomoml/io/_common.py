"""Helpers the readers share: lazy frame sources, angle files, the lazy-size rule."""

from __future__ import annotations

import contextlib
import numbers
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ScanReadError

#: Files whose projections are larger than this are opened lazily when ``lazy=None``.
LAZY_THRESHOLD_BYTES = 1 << 30

#: Target size of one dask chunk (whole frames along the angle axis).
DASK_CHUNK_BYTES = 64 << 20

#: Two angles closer than this (degrees) count as repeats when trimming padded angle files.
ANGLE_REPEAT_TOL_DEG = 0.01


def want_lazy(lazy: bool | None, nbytes: int) -> bool:
    """Apply the ``lazy`` argument: ``None`` means lazy above :data:`LAZY_THRESHOLD_BYTES`."""
    return nbytes > LAZY_THRESHOLD_BYTES if lazy is None else bool(lazy)


def even_theta(n: int) -> np.ndarray:
    """``n`` angles evenly spaced over [0°, 180°) in radians, the fallback when a file has none."""
    return np.linspace(0.0, np.pi, n, endpoint=False)


def theta_to_radians(values: Any, units: Any, source: Any = None) -> np.ndarray:
    """Angles from a file in radians; the file's ``units`` decides, degrees when it says nothing."""
    if isinstance(units, bytes):
        units = units.decode(errors="replace")
    values = np.asarray(values, dtype=np.float64)
    if sum(n > 1 for n in values.shape) > 1:  # (n,), (n, 1) and (1, n) are lists of angles; (5, 6) is not
        where = f"{source}: " if source is not None else ""
        raise ScanReadError(f"{where}the angles have shape {values.shape}; expected one angle per projection (a 1-D list)")
    values = values.ravel()
    if isinstance(units, str) and units.strip().lower() in ("rad", "radian", "radians"):
        return values
    return np.radians(values)


def angle_chunks(shape: tuple[int, ...], itemsize: int, storage_chunk0: int | None = None) -> tuple[int, ...]:
    """Dask chunks of whole frames, about :data:`DASK_CHUNK_BYTES` each, aligned to storage chunks."""
    frame = max(1, int(np.prod(shape[1:])) * itemsize)
    k = max(1, DASK_CHUNK_BYTES // frame)
    if storage_chunk0 and storage_chunk0 > 1:
        k = max(storage_chunk0, (k // storage_chunk0) * storage_chunk0)
    return (min(k, max(1, shape[0])),) + tuple(shape[1:])


def _expand_key(key: Any, ndim: int) -> tuple[Any, ...]:
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1 :]
    return key + (slice(None),) * (ndim - len(key))


class FrameSource:
    """A read-only, array-like view of frames in a file, for ``dask.array.from_array``.

    Subclasses implement ``_read(frames, rest)``: the physical frames (sorted, unique) with the
    row/column index ``rest`` (ints and slices only). ``frames`` maps the logical projection
    index to the physical frame (NXtomo interleaves flats and darks with projections). The open
    file is dropped on pickling and reopened on demand, so dask workers can use it.
    """

    #: Reads share one open file handle, so dask's threads take turns.
    serial_reads = True

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any, frames: np.ndarray | None = None):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.frames = frames
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock")
        self._drop_handles(state)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _drop_handles(self, state: dict[str, Any]) -> None:
        """Remove unpicklable open-file handles from ``state``."""

    def _read(self, frames: np.ndarray, rest: tuple[Any, ...]) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _expand_key(key, self.ndim)
        logical = np.arange(self.shape[0])[key[0]]
        rest = key[1:]
        # h5py and per-frame readers take ints and forward slices; anything else is applied here
        simple = all(
            isinstance(k, numbers.Integral) or (isinstance(k, slice) and (k.step is None or k.step > 0))
            for k in rest
        )
        physical = np.atleast_1d(logical if self.frames is None else self.frames[logical])
        unique, inverse = np.unique(physical, return_inverse=True)
        if unique.size == 0:
            block = np.empty(
                (0,) + np.empty(self.shape[1:], dtype=bool)[rest if simple else ()].shape, self.dtype
            )
        else:
            with self._lock if self.serial_reads else contextlib.nullcontext():
                block = self._read(unique, rest if simple else (slice(None),) * len(rest))
        if unique.size != physical.size or not np.array_equal(unique, physical):
            block = block[inverse.ravel()]
        if not simple:
            block = block[(slice(None),) + rest]
        return block[0] if np.ndim(logical) == 0 else block


def as_dask(source: Any, storage_chunk0: int | None = None) -> Any:
    """Wrap an array-like (``FrameSource``, h5py/zarr dataset) as a dask array chunked by frames."""
    import dask.array as da

    chunks = angle_chunks(tuple(source.shape), np.dtype(source.dtype).itemsize, storage_chunk0)
    meta = np.empty((0,) * len(source.shape), dtype=source.dtype)
    # fancy=True (the default) keeps dask's slice fusion: a sinogram reads one row per frame,
    # not whole frames.
    # name=False: a random graph name, so dask never hashes (reads) the source to name it
    return da.from_array(source, chunks=chunks, meta=meta, name=False)


# ---- angle files -------------------------------------------------------------------------------


def read_angle_file(path: Path) -> np.ndarray:
    """Angles in degrees from a text file (one per line, or separated by spaces/commas; ``#`` comments)."""
    try:
        text = Path(path).read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScanReadError(f"{path}: cannot read the angles file ({exc})") from None
    values = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].replace(",", " ").strip()
        for token in line.split():
            try:
                values.append(float(token))
            except ValueError:
                raise ScanReadError(
                    f"{path}: line {lineno} of the angles file is not a number: {token!r}"
                ) from None
    if not values:
        raise ScanReadError(f"{path}: the angles file holds no numbers")
    angles = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(angles)):
        raise ScanReadError(f"{path}: the angles file contains NaN or inf")
    return angles


def trim_repeated_ends(angles_deg: np.ndarray) -> np.ndarray:
    """Collapse runs of (nearly) equal angles at both ends of a list to one value each.

    Some beamlines (Diamond I13, the Savu example) pad the angle list with the first and last
    angle repeated, once for each dark/flat frame recorded at that motor position.

    >>> trim_repeated_ends(np.array([0, 0, 0, 1, 2, 3, 3])).tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    a = np.asarray(angles_deg, dtype=np.float64)
    start, stop = 0, a.size
    while start + 1 < stop and abs(a[start + 1] - a[start]) <= ANGLE_REPEAT_TOL_DEG:
        start += 1
    while stop - 1 > start and abs(a[stop - 2] - a[stop - 1]) <= ANGLE_REPEAT_TOL_DEG:
        stop -= 1
    return a[start:stop]


def match_angles(angles_deg: np.ndarray, n_projections: int, source: Path, notes: list[str]) -> np.ndarray:
    """Angles (radians) for ``n_projections`` frames from an angle list, trimming padded ends.

    Raises :class:`InputError` naming both counts when they cannot be matched.
    """
    if angles_deg.size == n_projections:
        return np.radians(angles_deg)
    trimmed = trim_repeated_ends(angles_deg)
    if trimmed.size == n_projections:
        notes.append(
            f"{Path(source).name} lists {angles_deg.size} angles for {n_projections} projections; "
            f"the repeated values padding both ends were collapsed to one each "
            f"({trimmed[0]:g}° .. {trimmed[-1]:g}°)"
        )
        return np.radians(trimmed)
    raise InputError(
        f"{source}: {angles_deg.size} angles ({trimmed.size} after collapsing repeated values at "
        f"the ends) for {n_projections} projections; the angles file must give one angle per projection"
    )
