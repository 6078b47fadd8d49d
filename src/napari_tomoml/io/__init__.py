"""Reading and writing scans and volumes (Qt-free).

:func:`load_scan` opens any supported format as a :class:`Scan`; large HDF5, zarr and TIFF
data come back as dask arrays (nothing read until used) and ``.npy`` files memory-mapped.
Input files are only ever opened read-only.

>>> from napari_tomoml.io import load_scan
>>> scan = load_scan("tooth.h5")          # doctest: +SKIP
>>> print(scan.summary())                 # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ScanReadError
from ._common import LAZY_THRESHOLD_BYTES
from .arrays import is_zarr, read_npy, read_zarr
from .contrast import estimate_contrast_limits
from .hdf5 import HDF5_SUFFIXES, read_dxchange, read_hdf5, read_nxtomo
from .scan import Scan
from .tiff import TIFF_SUFFIXES, read_tiff_folder, read_tiff_stack
from .volume import read_volume
from .writers import write_hdf5, write_tiff_stack, write_zarr

__all__ = [
    "LAZY_THRESHOLD_BYTES",
    "Scan",
    "estimate_contrast_limits",
    "load_scan",
    "read_dxchange",
    "read_hdf5",
    "read_npy",
    "read_nxtomo",
    "read_tiff_folder",
    "read_tiff_stack",
    "read_volume",
    "read_zarr",
    "write_hdf5",
    "write_tiff_stack",
    "write_zarr",
]

SUPPORTED = "HDF5 (DXchange, NXtomo: .h5 .hdf5 .nxs), TIFF stack (.tif), folder of TIFFs, .npy, zarr"


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def load_scan(path: str | Path, *, lazy: bool | None = None) -> Scan:
    """Open a tomography scan from any supported file or folder.

    The format comes from the path: an HDF5 file (DXchange or NXtomo, told apart by content),
    a multi-page ``.tif``, a ``.npy`` file, a zarr store, or a folder of TIFF projections.
    ``lazy=None`` keeps data larger than :data:`LAZY_THRESHOLD_BYTES` on disk (dask array;
    ``.npy`` always memory-mapped); ``True`` always, ``False`` never.
    Failures raise :class:`~napari_tomoml.errors.ScanReadError` or
    :class:`~napari_tomoml.errors.InputError` naming the file and the problem.

    >>> load_scan("tooth.h5").shape   # doctest: +SKIP
    (181, 2, 640)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ScanReadError(f"{path}: no such file or folder")
    if path.is_dir():
        if is_zarr(path):
            return read_zarr(path, lazy=lazy)
        return read_tiff_folder(path, lazy=lazy)
    suffix = path.suffix.lower()
    try:
        hdf5 = suffix in HDF5_SUFFIXES or _is_hdf5(path)
    except OSError as exc:
        raise ScanReadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if hdf5:
        return read_hdf5(path, lazy=lazy)
    if suffix in TIFF_SUFFIXES:
        return read_tiff_stack(path, lazy=lazy)
    if suffix == ".npy":
        return read_npy(path, lazy=lazy)
    raise ScanReadError(f"{path}: unknown scan format {suffix or '(no extension)'!r}; supported: {SUPPORTED}")
