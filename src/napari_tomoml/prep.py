"""Flat/dark normalisation, −log and zinger removal: raw detector frames to line integrals.

>>> import napari_tomoml as tm
>>> scan = tm.load_scan("tooth.h5")        # doctest: +SKIP
>>> sino = tm.normalize(scan)              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import InputError
from .io.scan import Scan
from .progress import Progress, ProgressArg, run_to_end

#: Without flats, input whose maximum exceeds this is taken to be raw counts, not transmission.
MAX_TRANSMISSION = 1.5

#: Size of one block of frames processed at a time when ``chunk`` is not given.
CHUNK_BYTES = 32 << 20


def remove_zingers(projections: Any, threshold: float, size: int = 3) -> np.ndarray:
    """Replace bright outliers (zingers) by the median of their ``size`` x ``size`` neighbourhood.

    A pixel is a zinger when it exceeds that local median by more than ``threshold``, in the
    data's own units (as tomopy's ``remove_outlier``). Works on one frame ``(rows, cols)`` or on
    frames ``(n, rows, cols)``, each filtered on its own; returns a float32 copy.

    >>> import numpy as np
    >>> frame = np.ones((5, 5), np.float32); frame[2, 2] = 100
    >>> float(remove_zingers(frame, threshold=10)[2, 2])
    1.0
    """
    if threshold is None or not threshold > 0:
        raise InputError(f"zinger threshold must be a positive number; got {threshold!r}")
    if int(size) < 2:
        raise InputError(f"zinger filter size must be at least 2; got {size!r}")
    data = np.array(projections, dtype=np.float32)
    if data.ndim not in (2, 3):
        raise InputError(f"projections have shape {data.shape}; expected (rows, cols) or (n, rows, cols)")
    footprint = (int(size),) * 2 if data.ndim == 2 else (1, int(size), int(size))
    local = ndimage.median_filter(data, size=footprint, mode="reflect")
    zingers = data - local > threshold
    data[zingers] = local[zingers]
    return data


def _reference(frames: Any, name: str, frame_shape: tuple[int, ...], where: str, zinger: float | None) -> Any:
    """Median frame of flats or darks (robust to a stray zinger or a bad frame), float32."""
    if frames is None:
        return None
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[1:] != frame_shape or frames.shape[0] == 0:
        raise InputError(
            f"{where}{name} have shape {frames.shape}; expected (n, {frame_shape[0]}, {frame_shape[1]}) "
            "like the projections"
        )
    if not np.all(np.isfinite(frames)):
        raise InputError(f"{where}{name} contain NaN or inf; they would spoil every projection")
    if zinger is not None:
        frames = remove_zingers(frames, zinger)
    return np.median(frames, axis=0)


def _bounds(projections: Any, chunk: int | None) -> list[int]:
    n = projections.shape[0]
    dask_chunks = getattr(projections, "chunks", None)
    if chunk is None and isinstance(dask_chunks, tuple) and dask_chunks and isinstance(dask_chunks[0], tuple):
        return [int(b) for b in np.cumsum((0,) + dask_chunks[0])]  # each dask chunk computed once
    if chunk is None:
        chunk = max(1, CHUNK_BYTES // max(1, 4 * int(np.prod(projections.shape[1:]))))
    if int(chunk) < 1:
        raise InputError(f"chunk must be a positive number of frames; got {chunk!r}")
    return list(range(0, n, int(chunk))) + [n]


def normalize_steps(
    scan_or_projections: Any,
    flats: Any = None,
    darks: Any = None,
    *,
    zinger_threshold: float | None = None,
    min_transmission: float = 1e-6,
    chunk: int | None = None,
    out: Any = None,
) -> Generator[Progress, None, Any]:
    """Generator form of :func:`normalize`: yields :class:`Progress` per block, returns the result.

    >>> import numpy as np
    >>> from napari_tomoml.progress import run_to_end
    >>> print(run_to_end(normalize_steps(np.full((2, 1, 1), 0.5))).round(3).ravel())
    [0.693 0.693]
    """
    where = ""
    if isinstance(scan_or_projections, Scan):
        scan = scan_or_projections
        projections = scan.projections
        flats = scan.flats if flats is None else flats
        darks = scan.darks if darks is None else darks
        if scan.metadata.get("source"):
            where = f"{Path(scan.metadata['source']).name}: "
    else:
        projections = scan_or_projections
        if not hasattr(projections, "ndim"):
            projections = np.asarray(projections)
    if projections.ndim != 3:
        raise InputError(
            f"{where}projections have shape {tuple(projections.shape)}; expected (angles, rows, cols)"
        )
    if np.dtype(projections.dtype).kind not in "biuf":
        raise InputError(f"{where}projections have dtype {projections.dtype}; expected numbers")
    if not min_transmission > 0:
        raise InputError(f"min_transmission must be positive; got {min_transmission!r}")
    shape = tuple(int(s) for s in projections.shape)
    flat = _reference(flats, "flats", shape[1:], where, zinger_threshold)
    dark = _reference(darks, "darks", shape[1:], where, zinger_threshold)
    if flat is None and dark is not None:
        raise InputError(
            f"{where}darks were given without flats; give flats too (or neither for transmission data)"
        )
    if flat is not None:
        dark = np.zeros_like(flat) if dark is None else dark
        span = flat - dark
        # pixels where the flat is no brighter than the dark are dead: give them transmission 1
        # (zero attenuation) rather than a division by zero
        dead = ~(span > 0)
        if dead.all():
            raise InputError(f"{where}flats are nowhere brighter than darks; check which frames are which")
        span[dead] = 1.0
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise InputError(f"out has shape {tuple(out.shape)}; expected {shape}")
    bounds = _bounds(projections, chunk)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        block = np.array(projections[a:b], dtype=np.float32)  # a copy: the caller's data stay untouched
        bad = block.size - np.count_nonzero(np.isfinite(block))
        if bad:
            raise InputError(
                f"{where}projections {a}..{b - 1} contain {bad} NaN or inf values; "
                "replace them (e.g. numpy.nan_to_num) before normalising"
            )
        if zinger_threshold is not None:
            block = remove_zingers(block, zinger_threshold)
        if flat is not None:
            block -= dark
            block /= span
            block[:, dead] = 1.0
        elif block.size and block.max() > MAX_TRANSMISSION:
            raise InputError(
                f"{where}no flats given and the data reach {block.max():g}, so they look like raw counts, "
                f"not transmission (0..1); give flats (and darks) to normalise raw frames"
            )
        np.maximum(block, min_transmission, out=block)
        np.log(block, out=block)
        np.negative(block, out=block)
        out[a:b] = block
        yield Progress(done=b, total=shape[0], message="normalising")
    return out


def normalize(
    scan_or_projections: Any,
    flats: Any = None,
    darks: Any = None,
    *,
    zinger_threshold: float | None = None,
    min_transmission: float = 1e-6,
    chunk: int | None = None,
    out: Any = None,
    progress: ProgressArg = None,
) -> Any:
    """Raw frames to line integrals: ``-log((proj - dark) / (flat - dark))``, float32.

    ``scan_or_projections`` is a :class:`~napari_tomoml.io.Scan` (its flats and darks are used
    unless given here) or an ``(angles, rows, cols)`` array, possibly lazy (dask, memmap, HDF5):
    it is processed ``chunk`` frames at a time (default about 32 MiB, or dask's chunks).

    - Flats and darks are reduced to their per-pixel *median*, robust to a bad frame.
    - Transmission is clipped below at ``min_transmission`` so zero or negative values (noise,
      over-subtracted darks) give a large but finite value, never inf/NaN. Pixels whose flat is
      not brighter than the dark (dead pixels) get transmission 1, i.e. 0.
    - Without flats the input must already be transmission: values up to ``MAX_TRANSMISSION``
      (1.5) are accepted and only ``-log`` is applied; larger values raise :class:`InputError`
      (raw counts need flats). Darks without flats are refused.
    - ``zinger_threshold`` (data units) removes bright outliers from projections, flats and
      darks with :func:`remove_zingers` first.
    - NaN/inf in the projections, flats or darks raise :class:`InputError`, as do shape
      mismatches and arrays that are not 3-D.

    The result goes to ``out`` if given (any array supporting slice assignment, e.g. a memmap
    or zarr array, for data larger than memory), else to a new numpy array.

    >>> import numpy as np
    >>> proj = np.full((2, 1, 2), 60.0); flat = np.full((1, 2), 110.0); dark = np.full((1, 2), 10.0)
    >>> print(normalize(proj, flat, dark).round(4))  # -log((60 - 10) / (110 - 10))
    [[[0.6931 0.6931]]
    <BLANKLINE>
     [[0.6931 0.6931]]]
    """
    return run_to_end(
        normalize_steps(
            scan_or_projections,
            flats,
            darks,
            zinger_threshold=zinger_threshold,
            min_transmission=min_transmission,
            chunk=chunk,
            out=out,
        ),
        progress,
    )
