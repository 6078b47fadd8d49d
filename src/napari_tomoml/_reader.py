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


# napari's own reader also claims these (through imageio, which cannot read a scan)
PREFERRED_PATTERNS = ("*.h5", "*.hdf5", "*.nxs")


def prefer_tomoml_reader(settings: Any) -> list[str]:
    """Make napari-tomoml the reader napari picks for HDF5/NeXus files, unless the user chose one.

    napari asks which plugin to use when two claim a file (and ``viewer.open(path)`` in a script
    defaults to napari's own reader, which fails on HDF5 scans); with this preference File ▸
    Open, drag-and-drop and ``viewer.open(path, plugin=None)`` use ours. ``settings`` is
    ``napari.settings.get_settings()``. Returns the patterns that were set.
    """
    chosen = dict(settings.plugins.extension2reader)
    added = [p for p in PREFERRED_PATTERNS if p not in chosen]
    if added:
        settings.plugins.extension2reader = {**chosen, **{p: "napari-tomoml" for p in added}}
    return added


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


def physical_scale(metadata: dict[str, Any], kind: str, ndim: int) -> dict[str, Any]:
    """``scale`` (and ``units`` for volumes) layer kwargs from ``metadata["pixel_size_um"]``.

    Projections keep one step per angle on their first axis; their rows and columns, and a
    volume's z, y, x, are in µm, so a reconstruction lies over the rows it came from.

    >>> physical_scale({"pixel_size_um": 0.65}, "volume", 3)
    {'scale': (0.65, 0.65, 0.65), 'units': ('um', 'um', 'um')}
    >>> physical_scale({}, "projections", 3)
    {}
    """
    size = metadata.get("pixel_size_um")
    if not isinstance(size, (int, float)) or not size > 0:
        return {}
    size = float(size)
    if kind in ("projections", "sinograms") and ndim == 3:
        return {"scale": (1.0, size, size)}
    return {"scale": (size,) * ndim, "units": ("um",) * ndim}


def scan_layer_data(scan: Any, source: str | Path, name: str | None = None) -> tuple:
    """``(data, kwargs, "image")`` for the raw projections of ``scan``."""
    src = Path(source)
    name = name or (src.stem if src.suffix else src.name)
    data = scan.projections
    meta = scan_metadata(scan, src)
    kwargs = {
        "name": f"{name} projections" if meta["kind"] == "projections" else name,
        "metadata": meta,
        "contrast_limits": contrast_limits(data),
        "colormap": "gray",
        "axis_labels": ("angle", "row", "col") if meta["kind"] == "projections" else ("z", "y", "x"),
        **physical_scale(meta, meta["kind"], data.ndim),
    }
    return (data, kwargs, "image")


def volume_layer_data(volume: Any, source: str | Path) -> tuple:
    """``(data, kwargs, "image")`` for a result we saved, its provenance in ``metadata``."""
    src = Path(source)
    meta = dict(volume.metadata)
    meta["source"] = str(src)
    name = meta.pop("layer_name", None) or (src.stem if src.suffix else src.name)
    kwargs = {
        "name": str(name),
        "metadata": meta,
        "contrast_limits": contrast_limits(volume.data),
        "colormap": "gray",
        "axis_labels": ("z", "y", "x")[-volume.ndim :],
        **physical_scale(meta, "volume", volume.ndim),
    }
    return (volume.data, kwargs, "image")


def read_scan(path: str | list[str]) -> list[tuple]:
    """Read one scan, or a volume we saved, into a layer (raises :class:`~napari_tomoml.errors.ScanReadError`).

    A file whose provenance says it is a result (``task`` written by our writers) comes back as a
    volume (``kind: volume``, provenance in ``metadata``); anything else as projections.
    """
    from . import load_scan
    from .io.volume import _file_metadata, read_volume

    p = _single_path(path)
    if p is None:
        from .errors import ScanReadError

        raise ScanReadError("napari-tomoml reads one scan at a time; open the files one by one")
    if _file_metadata(p, None).get("task"):
        return [volume_layer_data(read_volume(p), p)]
    scan = load_scan(p)
    return [scan_layer_data(scan, p)]
