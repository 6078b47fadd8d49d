"""napari reader: open a tomography scan (DXchange/NXtomo HDF5, npy, zarr, TIFF stack or folder).

Thin: :func:`napari_tomoml.load_scan` does the reading; this module only turns a
:class:`~napari_tomoml.io.scan.Scan` into napari layer data. Large files stay lazy (dask), and
contrast limits come from a small sample, never from a scan of the whole volume.
No Qt is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCAN_SUFFIXES = (".h5", ".hdf5", ".nxs", ".npy", ".zarr", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")


def _single_path(path: str | list[str]) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(path)


def _tiff_ndim(p: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            return tif.series[0].ndim
    except (OSError, ValueError, IndexError, KeyError):
        return 3  # unreadable: let the reading function report why


def _looks_like_scan(p: Path) -> bool:
    suffix = p.suffix.lower()
    if suffix in _TIFF_SUFFIXES and p.is_file():
        return _tiff_ndim(p) == 3  # a single 2-D image is not a scan: leave it to napari's reader
    if suffix in SCAN_SUFFIXES:
        return True
    if p.is_dir():
        # a projections folder: TIFF files inside, or a zarr group without the suffix
        if (p / ".zgroup").exists() or (p / ".zarray").exists() or (p / "zarr.json").exists():
            return True
        try:
            return any(c.suffix.lower() in _TIFF_SUFFIXES for c in p.iterdir())
        except OSError:
            return False
    return False


def get_reader(path: str | list[str]):
    """npe2 reader hook: a reading function for a scan file or folder, else ``None``."""
    p = _single_path(path)
    if p is None or not _looks_like_scan(p):
        return None
    return read_scan


def contrast_limits(data: Any) -> tuple[float, float]:
    """Contrast limits from a sample of ``data`` (a few planes; lazy data stays lazy)."""
    from .io import estimate_contrast_limits

    lo, hi = estimate_contrast_limits(data)
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def scan_metadata(scan: Any, source: str | Path | None = None) -> dict[str, Any]:
    """The ``layer.metadata`` other widgets rely on: theta (radians), flats/darks, source, summary."""
    import numpy as np

    meta: dict[str, Any] = {}
    meta.update(dict(getattr(scan, "metadata", {}) or {}))
    meta["theta"] = np.asarray(scan.theta, dtype=np.float64)
    flats = getattr(scan, "flats", None)
    darks = getattr(scan, "darks", None)
    meta["flats"] = flats
    meta["darks"] = darks
    meta["n_flats"] = 0 if flats is None else int(flats.shape[0])
    meta["n_darks"] = 0 if darks is None else int(darks.shape[0])
    meta["normalized"] = False
    # a volume we wrote (its provenance read back) is not a scan's projections
    meta["kind"] = "volume" if meta.get("task") in ("reconstruct", "denoise") else "projections"
    if source is not None:
        meta["source"] = str(source)
    try:
        meta["summary"] = scan.summary()
    except Exception:  # a summary is a convenience, never a reason to fail a read
        pass
    return meta


def scan_layer_data(scan: Any, source: str | Path, name: str | None = None) -> tuple:
    """``(data, kwargs, "image")`` for the raw projections of ``scan``."""
    src = Path(source)
    name = name or (src.stem if src.suffix else src.name)
    data = scan.projections
    kwargs = {
        "name": f"{name} projections",
        "metadata": scan_metadata(scan, src),
        "contrast_limits": contrast_limits(data),
        "colormap": "gray",
    }
    return (data, kwargs, "image")


def read_scan(path: str | list[str]) -> list[tuple]:
    """Read one scan into a projections layer (raises :class:`~napari_tomoml.errors.ScanReadError`)."""
    from . import load_scan

    p = _single_path(path)
    if p is None:
        from .errors import ScanReadError

        raise ScanReadError("napari-tomoml reads one scan at a time; open the files one by one")
    scan = load_scan(p)
    return [scan_layer_data(scan, p)]
