"""Writers for volumes and scans: TIFF stack, HDF5 (DXchange layout), zarr.

Every writer refuses to replace an existing path unless ``overwrite=True``, writes to a hidden
temporary name beside the target and renames it into place at the end, so a crash or a full
disk never leaves a half-written file over the user's data. Arrays are written slab by slab
along the first axis, so a lazy (dask, memmap, HDF5) input never has to fit in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputExistsError
from .scan import Scan

#: Size of one slab read from the input while writing.
SLAB_BYTES = 64 << 20

#: TIFF stacks larger than this are written as BigTIFF (classic TIFF stops at 4 GiB offsets).
BIGTIFF_BYTES = (2 << 30) - (64 << 20)


def _check_volume(volume: Any, name: str = "volume") -> Any:
    if not hasattr(volume, "ndim"):
        volume = np.asarray(volume)
    if volume.ndim == 0:
        raise InputError(f"{name} is a scalar; expected an array")
    if np.dtype(volume.dtype).kind not in "biuf":
        raise InputError(f"{name} has dtype {volume.dtype}; expected a numeric array")
    return volume


def _slabs(volume: Any, align: int = 1) -> Iterator[tuple[slice, np.ndarray]]:
    """``(slice, numpy slab)`` along axis 0: dask chunks, else ~SLAB_BYTES in multiples of ``align``."""
    n = volume.shape[0]
    chunks = getattr(volume, "chunks", None)
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], tuple):  # dask: compute each chunk once
        bounds = np.cumsum((0,) + chunks[0])
    else:
        per_frame = max(1, int(np.prod(volume.shape[1:])) * np.dtype(volume.dtype).itemsize)
        step = max(align, (SLAB_BYTES // per_frame) // align * align)
        bounds = list(range(0, n, step)) + [n]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        sl = slice(int(a), int(b))
        yield sl, np.asarray(volume[sl])


def storage_chunks(shape: tuple[int, ...], itemsize: int, target: int = 1 << 20) -> tuple[int, ...]:
    """On-disk chunks of about ``target`` bytes: a few frames by a band of rows by all columns.

    Balances reading one projection (few chunks) against one sinogram (a band of rows per
    angle rather than whole frames).

    >>> storage_chunks((1000, 2048, 2048), 4)
    (4, 32, 2048)
    """
    if len(shape) < 3:
        return tuple(shape)
    cols = int(np.prod(shape[2:]))
    n_frames = min(shape[0], 4)
    rows = max(1, min(shape[1], target // max(1, n_frames * cols * itemsize)))
    return (n_frames, rows) + tuple(shape[2:])


@contextmanager
def _atomic(path: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            # a folder cannot be replaced in one step: move the old one aside first
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _json_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``metadata``, refused with :class:`InputError` unless JSON can store it."""
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"metadata must be JSON-serialisable (strings, numbers, lists, dicts): {exc}"
        ) from None
    return metadata


def _check_theta(theta: Any, volume: Any) -> np.ndarray | None:
    if theta is None:
        return None
    theta = np.asarray(theta, dtype=np.float64).ravel()
    if volume.ndim != 3 or theta.size != volume.shape[0]:
        raise InputError(f"{theta.size} angles for a volume of shape {tuple(volume.shape)}")
    return theta


def _unpack(volume: Any, theta: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """``(array, flats, darks, theta, attrs)`` from a :class:`Scan` or a plain array."""
    if not isinstance(volume, Scan):
        return volume, None, None, theta, {}
    attrs = {}
    if volume.metadata.get("center") is not None:
        attrs["center"] = float(volume.metadata["center"])
    if volume.metadata.get("units"):
        attrs["units"] = str(volume.metadata["units"])
    theta = volume.theta if theta is None else theta
    return volume.projections, volume.flats, volume.darks, theta, attrs


def write_tiff_stack(
    path: str | Path,
    volume: Any,
    *,
    theta: Any = None,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a 2-D image or a 3-D stack as one multi-page TIFF (BigTIFF when over ~2 GiB).

    ``theta`` (radians) and ``metadata`` (JSON-serialisable) go into the file's description, where
    :func:`~napari_tomoml.io.read_tiff_stack` finds them again.

    >>> import numpy as np
    >>> write_tiff_stack("rec.tif", np.zeros((4, 8, 8), np.float32))   # doctest: +SKIP
    PosixPath('rec.tif')
    """
    import tifffile

    volume = _check_volume(volume)
    if volume.ndim not in (2, 3):
        raise InputError(f"volume has shape {volume.shape}; a TIFF stack takes 2-D or 3-D arrays")
    description = _json_metadata(metadata)
    theta = _check_theta(theta, volume)
    if theta is not None:
        description["theta_deg"] = np.degrees(theta).round(6).tolist()
    dtype = np.dtype(volume.dtype)
    big = int(np.prod(volume.shape)) * dtype.itemsize > BIGTIFF_BYTES

    def pages() -> Iterator[np.ndarray]:
        if volume.ndim == 2:
            yield np.asarray(volume)
            return
        for _, slab in _slabs(volume):
            yield from slab

    with _atomic(path, overwrite) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=big) as tif:
            # minisblack: a last axis of 3 or 4 must stay columns, not become RGB(A) samples
            tif.write(
                pages(), shape=volume.shape, dtype=dtype, photometric="minisblack", metadata=description
            )
    return Path(path)


def write_hdf5(
    path: str | Path,
    volume: Any,
    *,
    dataset: str = "/exchange/data",
    theta: Any = None,
    overwrite: bool = False,
    chunks: tuple[int, ...] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an array, or a whole :class:`Scan`, to HDF5 (DXchange layout by default).

    A :class:`Scan` writes projections, ``data_white`` (flats), ``data_dark`` (darks) and
    ``theta`` beside ``dataset``; for an array, ``theta`` (radians) is optional. Angles are stored
    in degrees with ``units="degrees"``, as DXchange expects. ``metadata`` (JSON-serialisable,
    e.g. provenance) becomes attributes of the dataset: numbers and strings as they are, lists
    and dicts as JSON text. ``chunks`` defaults to :func:`storage_chunks`.

    >>> import numpy as np
    >>> write_hdf5("proj.h5", np.zeros((3, 4, 5), np.float32), theta=[0, 1, 2])   # doctest: +SKIP
    PosixPath('proj.h5')
    """
    import h5py

    volume, flats, darks, theta, attrs = _unpack(volume, theta)
    volume = _check_volume(volume)
    theta = _check_theta(theta, volume)
    for key, value in _json_metadata(metadata).items():
        if value is not None:
            attrs[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    if not dataset.startswith("/") or dataset.endswith("/"):
        raise InputError(f"dataset must be an absolute HDF5 path like '/exchange/data'; got {dataset!r}")
    group, _, name = dataset.rpartition("/")
    # DXchange names beside /exchange/data; "<dataset>_theta" etc. beside any other dataset
    sibling = (lambda n: f"{group}/{n}") if name == "data" else (lambda n: f"{dataset}_{n}")
    chunks = chunks or storage_chunks(tuple(volume.shape), np.dtype(volume.dtype).itemsize)
    with _atomic(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(dataset, shape=volume.shape, dtype=volume.dtype, chunks=chunks)
            ds.attrs.update(attrs)
            for sl, slab in _slabs(volume, chunks[0]):
                ds[sl] = slab
            for key, ref in (("white", flats), ("dark", darks)):
                if ref is not None:
                    f.create_dataset(sibling(f"data_{key}" if name == "data" else key), data=np.asarray(ref))
            if theta is not None:
                th = f.create_dataset(sibling("theta"), data=np.degrees(theta))
                th.attrs["units"] = "degrees"
    return Path(path)


def write_zarr(
    path: str | Path,
    volume: Any,
    *,
    chunks: tuple[int, ...] | None = None,
    theta: Any = None,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an array, or a whole :class:`Scan`, as a zarr group with an array ``data``.

    A :class:`Scan` also writes ``flats``, ``darks`` and ``theta`` (degrees, ``units`` attribute)
    and its ``center`` as a group attribute. ``metadata`` (JSON-serialisable) becomes attributes
    of ``data``. ``chunks`` defaults to :func:`storage_chunks`.

    >>> import numpy as np
    >>> write_zarr("rec.zarr", np.zeros((4, 8, 8), np.float32))   # doctest: +SKIP
    PosixPath('rec.zarr')
    """
    import zarr

    volume, flats, darks, theta, group_attrs = _unpack(volume, theta)
    volume = _check_volume(volume)
    theta = _check_theta(theta, volume)
    data_attrs = _json_metadata(metadata)
    chunks = tuple(chunks or storage_chunks(tuple(volume.shape), np.dtype(volume.dtype).itemsize))
    with _atomic(path, overwrite) as tmp:
        group = zarr.open_group(store=str(tmp), mode="w")
        group.attrs.update(group_attrs)
        data = group.create_array("data", shape=volume.shape, dtype=volume.dtype, chunks=chunks)
        data.attrs.update(data_attrs)
        for sl, slab in _slabs(volume, chunks[0]):
            data[sl] = slab
        for key, ref in (("flats", flats), ("darks", darks)):
            if ref is not None:
                ref = np.asarray(ref)
                group.create_array(key, shape=ref.shape, dtype=ref.dtype)[...] = ref
        if theta is not None:
            th = group.create_array("theta", shape=theta.shape, dtype="float64")
            th[...] = np.degrees(theta)
            th.attrs["units"] = "degrees"
    return Path(path)
