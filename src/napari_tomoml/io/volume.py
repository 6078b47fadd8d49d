"""Read a plain volume (or image stack) back: what the writers wrote, or a scan's projections."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import InputError, ScanReadError
from ._common import as_dask, want_lazy
from .arrays import ZARR_NAMES, is_zarr
from .hdf5 import (
    HDF5_SUFFIXES,
    H5Frames,
    find_nxtomo_entry,
    open_h5,
    pixel_size_attrs,
    read_dataset,
    read_nxtomo,
)
from .tiff import TIFF_SUFFIXES, TiffStackFrames, read_tiff_folder


@dataclass
class Volume:
    """An array read from a file and what the file says about it (``metadata``).

    Behaves as its array where one is expected (``np.asarray``, ``shape``, slicing), so code that
    wants only the numbers can ignore the metadata. ``metadata["kind"]`` is ``"volume"`` for
    a result our writers saved (its provenance: ``task``, ``parameters``, ``source``…), else
    ``"projections"`` (a scan's frames) or ``"image"``.
    """

    data: Any
    metadata: dict[str, Any] = field(default_factory=dict)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = np.asarray(self.data)
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __len__(self) -> int:
        return len(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype


def _decode(value: Any) -> Any:
    """An attribute as stored by the writers: JSON text for lists/dicts, numpy scalars for numbers."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _with_kind(metadata: dict[str, Any], ndim: int) -> dict[str, Any]:
    meta = {k: v for k, v in metadata.items() if k != "shape"}  # tifffile adds "shape"
    if meta.get("task") or meta.get("layer_name"):  # provenance our writers saved: a result
        meta.setdefault("kind", "volume" if ndim == 3 else "image")
    else:
        meta.setdefault("kind", "projections" if ndim == 3 else "image")
    return meta


def _file_metadata(path: Path, dataset: str | None) -> dict[str, Any]:
    """What the file records about its array: TIFF description JSON, HDF5 or zarr attributes."""
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES and path.is_file():
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shaped = tif.shaped_metadata
                return dict(shaped[0]) if shaped and shaped[0] else {}
        if suffix in HDF5_SUFFIXES:
            with open_h5(path) as f:
                meta = pixel_size_attrs(f)
                ds = f.get(dataset or "/exchange/data")
                if isinstance(ds, h5py.Dataset):
                    meta.update({str(k): _decode(v) for k, v in ds.attrs.items()})
                return meta
        if path.is_dir() and is_zarr(path):
            import zarr

            node = zarr.open(store=str(path), mode="r")
            if not isinstance(node, zarr.Array):
                node = next((node[n] for n in ZARR_NAMES["projections"] if isinstance(node.get(n), zarr.Array)), None)
            return {str(k): _decode(v) for k, v in dict(node.attrs).items()} if node is not None else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # the array itself was readable; its description is a bonus
    return {}


def _check_ndim(array: Any, path: Path, what: str) -> Any:
    if array.ndim not in (2, 3):
        raise InputError(f"{path}: {what} has shape {tuple(array.shape)}; expected a 2-D image or 3-D volume")
    return array


def _h5_volume(path: Path, dataset: str | None, lazy: bool | None) -> Any:
    with open_h5(path) as f:
        if dataset is None and not isinstance(f.get("/exchange/data"), h5py.Dataset):
            if find_nxtomo_entry(f) is not None:
                return read_nxtomo(path, lazy=lazy).projections
            found: list[str] = []
            f.visititems(
                lambda name, obj: (
                    found.append("/" + name) if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) else None
                )
            )
            if len(found) != 1:
                listed = ", ".join(found[:8]) or "none"
                raise ScanReadError(
                    f"{path}: no /exchange/data and {len(found)} 2-D/3-D datasets ({listed}); "
                    "pass dataset= to choose one"
                )
            dataset = found[0]
        name = dataset or "/exchange/data"
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise ScanReadError(f"{path}: no dataset {name}")
        _check_ndim(ds, path, f"dataset {name}")
        if ds.ndim == 3 and want_lazy(lazy, ds.size * ds.dtype.itemsize):
            source = H5Frames(path, ds)
            return as_dask(source, source.storage_chunk0)
        return read_dataset(ds, path)


def _zarr_volume(path: Path, lazy: bool | None) -> Any:
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise ScanReadError(f"{path}: not a readable zarr store ({exc})") from None
    if not isinstance(node, zarr.Array):
        for name in ZARR_NAMES["projections"]:
            item = node.get(name)
            if isinstance(item, zarr.Array):
                node = item
                break
        else:
            raise ScanReadError(f"{path}: no array named {' or '.join(ZARR_NAMES['projections'])}")
    _check_ndim(node, path, f"array {node.path!r}")
    if want_lazy(lazy, int(np.prod(node.shape)) * node.dtype.itemsize):
        return as_dask(node, node.chunks[0])
    return node[...]


def _tiff_volume(path: Path, lazy: bool | None) -> Any:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            if len(shape) == 3 and want_lazy(lazy, int(np.prod(shape)) * dtype.itemsize):
                return as_dask(TiffStackFrames(path, shape, dtype))
            array = series.asarray()
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise ScanReadError(f"{path}: not a readable TIFF file, corrupt or truncated? ({exc})") from None
    return _check_ndim(array, path, "the image")


def read_volume(path: str | Path, *, dataset: str | None = None, lazy: bool | None = None) -> Volume:
    """Read a volume ``(z, y, x)`` or image, with what the file says about it, as a :class:`Volume`.

    Reads back what :mod:`~napari_tomoml.io.writers` wrote (TIFF stack, HDF5, zarr, ``.npy``)
    with its provenance in ``metadata`` and ``metadata["kind"] == "volume"``, and any scan's
    projections (TIFF folder too; ``kind`` ``"projections"``). In HDF5 the array is ``dataset``
    if given, else ``/exchange/data``, else an NXtomo entry's projections, else the file's only
    2-D/3-D dataset. Large 3-D data stay lazy (``.data`` dask; ``.npy`` memory-mapped) under the
    same ``lazy`` rule as :func:`~napari_tomoml.io.load_scan`.

    >>> import napari_tomoml as tm
    >>> vol = tm.read_volume("tooth_fbp.tif")   # doctest: +SKIP
    >>> vol.shape, vol.metadata["kind"], vol.metadata["task"]   # doctest: +SKIP
    ((2, 640, 640), 'volume', 'reconstruct')
    """
    path = Path(path).expanduser()
    array = _read_array(path, dataset, lazy)
    return Volume(array, _with_kind({"source": str(path), **_file_metadata(path, dataset)}, array.ndim))


def _read_array(path: Path, dataset: str | None, lazy: bool | None) -> Any:
    if not path.exists():
        raise ScanReadError(f"{path}: no such file or folder")
    if path.is_dir():
        if is_zarr(path):
            return _zarr_volume(path, lazy)
        return read_tiff_folder(path, lazy=lazy).projections
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return _h5_volume(path, dataset, lazy)
    if suffix in TIFF_SUFFIXES:
        return _tiff_volume(path, lazy)
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode=None if lazy is False else "r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ScanReadError(f"{path}: not a readable .npy file, corrupt or truncated? ({exc})") from None
        return _check_ndim(array, path, "the array")
    raise ScanReadError(
        f"{path}: unknown volume format {suffix or '(no extension)'!r}; use .tif, .h5, .zarr, .npy"
    )
