"""napari writers: save an image layer (a volume) as a TIFF stack, HDF5 or zarr.

Thin: :mod:`napari_tomoml.io.writers` does the writing and refuses to overwrite an existing file
(a :class:`~napari_tomoml.errors.TomomlError` napari shows as a notification). The layer's
metadata (provenance) goes with the volume where the format can hold it. No Qt here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TIFF_EXTENSIONS = (".tif", ".tiff")
HDF5_EXTENSIONS = (".h5", ".hdf5")
ZARR_EXTENSIONS = (".zarr",)


_DROP = object()


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, or a private marker when it should not go into a file.

    Scalars, strings, numpy scalars, lists of those and nested dicts are kept; arrays (angles,
    flats, darks) and objects (a Scan) are left out: the file holds them elsewhere or not at all.
    """
    import numpy as np

    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [jsonable(v) for v in value]
        return _DROP if any(v is _DROP for v in items) or len(items) > 64 else items
    if isinstance(value, dict):
        return {str(k): v for k, v in ((k, jsonable(v)) for k, v in value.items()) if v is not _DROP}
    return _DROP


def _provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a layer's metadata (its provenance), plus the layer name."""
    out = jsonable(dict(meta.get("metadata") or {}))
    if meta.get("name"):
        out = {"layer_name": str(meta["name"]), **out}
    return out


def _write(fmt: str, path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    from .io import writers

    func = {
        "tiff": writers.write_tiff_stack,
        "hdf5": writers.write_hdf5,
        "zarr": writers.write_zarr,
    }[fmt]
    result = _call_writer(func, path, data, _provenance(meta))
    return [str(result if result is not None else Path(path))]


def _call_writer(func, path, data, metadata):
    """Call an io writer, passing metadata when the writer accepts it; never overwrite."""
    import inspect

    params = inspect.signature(func).parameters
    kwargs: dict[str, Any] = {"overwrite": False}
    if "metadata" in params:
        kwargs["metadata"] = metadata
    return func(path, data, **kwargs)


def write_tiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: one multi-page TIFF (a stack of z slices)."""
    return _write("tiff", path, data, meta)


def write_hdf5(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: an HDF5 file (the volume as one dataset, provenance as attributes)."""
    return _write("hdf5", path, data, meta)


def write_zarr(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: a chunked zarr array (good for volumes larger than memory)."""
    return _write("zarr", path, data, meta)
