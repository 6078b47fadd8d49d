"""HDF5 readers: DXchange (APS) and NeXus NXtomo. Files are only ever opened read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import InputError, ScanReadError

try:  # registers the compression filters beamlines write with (Blosc, bitshuffle/LZ4, Zstd, ...)
    import hdf5plugin  # noqa: F401
except ImportError:  # plain gzip/lzf files still read; others fail with a message naming the filter
    pass
from ._common import FrameSource, as_dask, even_theta, theta_to_radians, want_lazy
from .scan import Scan

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".nx5", ".nx", ".cxi")


def open_h5(path: Path) -> h5py.File:
    """Open ``path`` read-only, turning h5py's errors into :class:`ScanReadError`."""
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ScanReadError(f"{path}: not a readable HDF5 file, corrupt or truncated? ({exc})") from None


def _as_str(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def read_dataset(ds: h5py.Dataset, path: Path) -> np.ndarray:
    """All of ``ds`` in memory; h5py's read errors become :class:`ScanReadError` naming ``path``."""
    try:
        return ds[()]
    except (OSError, ValueError) as exc:
        raise ScanReadError(f"{path}: cannot read dataset {ds.name}, corrupt or truncated? ({exc})") from None


class H5Frames(FrameSource):
    """Frames of one HDF5 dataset, read on demand; the file stays open while the object lives."""

    def __init__(self, path: Path, dataset: h5py.Dataset, frames: np.ndarray | None = None):
        n = ds_len = dataset.shape[0]
        if frames is not None:
            n = len(frames)
            if n and (frames.min() < 0 or frames.max() >= ds_len):
                raise ScanReadError(f"{path}: frame index outside dataset {dataset.name}")
        super().__init__(path, (n,) + tuple(dataset.shape[1:]), dataset.dtype, frames)
        self.dataset_name = dataset.name
        self.storage_chunk0 = dataset.chunks[0] if dataset.chunks else None
        self._file: h5py.File | None = None

    def _drop_handles(self, state: dict[str, Any]) -> None:
        state["_file"] = None

    def _read(self, frames: np.ndarray, rest: tuple[Any, ...]) -> np.ndarray:
        if self._file is None:
            self._file = open_h5(self.path)
        ds = self._file[self.dataset_name]
        # read contiguous runs as slices: h5py's list indexing is slow for long lists
        breaks = np.flatnonzero(np.diff(frames) != 1) + 1
        try:
            parts = [ds[(slice(int(run[0]), int(run[-1]) + 1),) + rest] for run in np.split(frames, breaks)]
        except (OSError, ValueError) as exc:
            raise ScanReadError(
                f"{self.path}: cannot read dataset {self.dataset_name}, corrupt or truncated? ({exc})"
            ) from None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _frames(path: Path, ds: h5py.Dataset, lazy: bool | None, frames: np.ndarray | None = None) -> Any:
    """The frames of ``ds`` (all, or those listed) as a dask array or an in-memory array."""
    if ds.ndim != 3:
        raise InputError(f"{path}: dataset {ds.name} has shape {ds.shape}; expected 3-D (frames, rows, cols)")
    source = H5Frames(path, ds, frames)
    if want_lazy(lazy, int(np.prod(source.shape)) * source.dtype.itemsize):
        return as_dask(source, source.storage_chunk0)
    if frames is None:
        return read_dataset(ds, path)
    return source[:]


def _center(*nodes: Any) -> float | None:
    """A rotation centre the file states (attribute or dataset ``center``/``rotation_center``)."""
    for node in nodes:
        if node is None:
            continue
        for name in ("center", "rotation_center"):
            value = node.attrs.get(name)
            if value is None and isinstance(node, h5py.Group) and isinstance(node.get(name), h5py.Dataset):
                value = node[name][()]
            if value is not None and np.size(value) == 1:
                return float(np.asarray(value).ravel()[0])
    return None


# length units as written in DXchange/NeXus ``units`` attributes, in micrometres
_UM_PER_UNIT = {"m": 1e6, "mm": 1e3, "cm": 1e4, "um": 1.0, "µm": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3}
# where DXchange (APS) and NXtomo keep the detector pixel size, with the unit assumed without a units attribute
_PIXEL_SIZE_FIELDS = (
    ("/measurement/instrument/detection_system/objective/resolution", "um"),
    ("/measurement/instrument/detector/actual_pixel_size_x", "um"),
    ("instrument/detector/x_pixel_size", "m"),
)


def pixel_size_attrs(f: h5py.File, entry: h5py.Group | None = None) -> dict[str, Any]:
    """``{"pixel_size_um": value}`` from a DXchange or NXtomo file, or ``{}`` where it has none.

    DXchange: ``/measurement/instrument/detection_system/objective/resolution`` (the effective
    pixel, µm) or ``detector/actual_pixel_size_x``; NXtomo: ``instrument/detector/x_pixel_size``
    of the entry (metres unless its ``units`` attribute says otherwise).
    """
    if entry is None:
        entry = find_nxtomo_entry(f) if "/exchange" not in f else None
    for name, default_unit in _PIXEL_SIZE_FIELDS:
        base = f if name.startswith("/") else entry
        node = base.get(name) if base is not None else None
        if not isinstance(node, h5py.Dataset) or node.size != 1:
            continue
        try:
            value = float(np.asarray(node[()]).ravel()[0])
        except (TypeError, ValueError):
            continue
        unit = _as_str(node.attrs["units"]).strip() if "units" in node.attrs else default_unit
        factor = _UM_PER_UNIT.get(unit.replace("micrometer", "um").replace("micrometre", "um"))
        if factor is not None and np.isfinite(value) and value > 0:
            return {"pixel_size_um": value * factor}
    return {}


def read_dxchange(path: str | Path, *, lazy: bool | None = None) -> Scan:
    """Read a DXchange HDF5 file (APS): ``/exchange/data``, ``data_white``, ``data_dark``, ``theta``.

    Angles in ``/exchange/theta`` are degrees unless its ``units`` attribute says radians; where
    the file has none they are assumed evenly spaced over [0°, 180°) and a note says so. Missing
    flats or darks give ``None`` and a note.

    >>> read_dxchange("tooth.h5").shape   # doctest: +SKIP
    (181, 2, 640)
    """
    path = Path(path)
    with open_h5(path) as f:
        ds = f.get("/exchange/data")
        if not isinstance(ds, h5py.Dataset):
            raise ScanReadError(f"{path}: no dataset /exchange/data (the DXchange projections)")
        projections = _frames(path, ds, lazy)
        n = ds.shape[0]
        notes: list[str] = []
        refs = {}
        for key, name in (("flats", "/exchange/data_white"), ("darks", "/exchange/data_dark")):
            ref = f.get(name)
            if isinstance(ref, h5py.Dataset) and ref.size:
                refs[key] = _frames(path, ref, False)
            else:
                refs[key] = None
                notes.append(f"no {name} in the file: {key} not available")
        th = f.get("/exchange/theta")
        if isinstance(th, h5py.Dataset):
            theta = theta_to_radians(read_dataset(th, path), th.attrs.get("units"), path)
            if theta.size != n:
                raise InputError(
                    f"{path}: /exchange/theta has {theta.size} angles but /exchange/data has {n} projections"
                )
        else:
            theta = even_theta(n)
            notes.append("no /exchange/theta in the file: angles assumed evenly spaced over [0°, 180°)")
        metadata: dict[str, Any] = {
            "source": str(path),
            "format": "dxchange",
            "dataset": "/exchange/data",
            "units": _as_str(ds.attrs["units"]) if "units" in ds.attrs else None,
            "notes": notes,
            **pixel_size_attrs(f),
        }
        center = _center(ds, f.get("/exchange"))
        if center is not None:
            metadata["center"] = center
    return Scan(projections, theta, refs["flats"], refs["darks"], metadata)


def find_nxtomo_entry(f: h5py.File) -> h5py.Group | None:
    """The NXentry whose ``definition`` is NXtomo, else the first NXentry with detector data."""
    entries = [
        g
        for g in f.values()
        if isinstance(g, h5py.Group) and _as_str(g.attrs.get("NX_class", "")) == "NXentry"
    ]
    for g in entries:
        definition = g.get("definition")
        if isinstance(definition, h5py.Dataset) and _as_str(definition[()]).strip().lower() == "nxtomo":
            return g
    for g in entries:
        if isinstance(g.get("instrument/detector/data"), h5py.Dataset):
            return g
    return None


def _first(group: h5py.Group, *names: str) -> h5py.Dataset | None:
    for name in names:
        node = group.get(name)
        if isinstance(node, h5py.Dataset):
            return node
    return None


def read_nxtomo(path: str | Path, *, lazy: bool | None = None) -> Scan:
    """Read a NeXus NXtomo file: frames split by ``image_key`` (0 projection, 1 flat, 2 dark).

    Data come from ``instrument/detector/data`` (or ``data/data``), angles from
    ``sample/rotation_angle`` in degrees unless its ``units`` attribute says radians. Frames with
    other keys (e.g. 3, alignment) are ignored. Without ``image_key`` every frame is a projection.

    >>> read_nxtomo("scan.nxs", lazy=True).lazy   # doctest: +SKIP
    True
    """
    path = Path(path)
    with open_h5(path) as f:
        entry = find_nxtomo_entry(f)
        if entry is None:
            raise ScanReadError(f"{path}: no NXentry with definition NXtomo")
        ds = _first(entry, "instrument/detector/data", "data/data")
        if ds is None:
            raise ScanReadError(f"{path}: {entry.name} has no instrument/detector/data or data/data dataset")
        if ds.ndim != 3:
            raise InputError(
                f"{path}: dataset {ds.name} has shape {ds.shape}; expected 3-D (frames, rows, cols)"
            )
        n_frames = ds.shape[0]
        notes: list[str] = []
        key_ds = _first(
            entry, "instrument/detector/image_key", "data/image_key", "instrument/detector/image_key_control"
        )
        if key_ds is not None:
            keys = np.asarray(read_dataset(key_ds, path)).ravel()
            if keys.size != n_frames:
                raise ScanReadError(
                    f"{path}: {key_ds.name} has {keys.size} values for {n_frames} frames in {ds.name}"
                )
        else:
            keys = np.zeros(n_frames, dtype=int)
            notes.append("no image_key in the file: every frame taken as a projection")
        proj_idx = np.flatnonzero(keys == 0)
        if proj_idx.size == 0:
            raise ScanReadError(f"{path}: image_key marks no frame as a projection (key 0)")
        all_frames = proj_idx.size == n_frames
        projections = _frames(path, ds, lazy, None if all_frames else proj_idx)
        refs = {}
        for name, k in (("flats", 1), ("darks", 2)):
            idx = np.flatnonzero(keys == k)
            refs[name] = _frames(path, ds, False, idx) if idx.size else None
            if not idx.size:
                notes.append(f"no frames with image_key {k}: {name} not available")
        rot = _first(entry, "sample/rotation_angle", "data/rotation_angle")
        if rot is None:
            theta = even_theta(proj_idx.size)
            notes.append("no sample/rotation_angle in the file: angles assumed evenly spaced over [0°, 180°)")
        else:
            theta = theta_to_radians(read_dataset(rot, path), rot.attrs.get("units"), path)
            if theta.size == n_frames:
                theta = theta[proj_idx]
            elif theta.size != proj_idx.size:
                raise InputError(
                    f"{path}: {rot.name} has {theta.size} angles for {n_frames} frames "
                    f"({proj_idx.size} projections)"
                )
        metadata: dict[str, Any] = {
            "source": str(path),
            "format": "nxtomo",
            "entry": entry.name,
            "dataset": ds.name,
            "units": _as_str(ds.attrs["units"]) if "units" in ds.attrs else None,
            "notes": notes,
            **pixel_size_attrs(f, entry),
        }
        xpos = _first(entry, "instrument/detector/x_rotation_axis_pixel_position")
        if xpos is not None and xpos.size == 1:
            # NXtomo's convention for this field varies by writer; kept raw, not used as centre
            metadata["x_rotation_axis_pixel_position"] = float(np.asarray(xpos[()]).ravel()[0])
        center = _center(ds, entry)
        if center is not None:
            metadata["center"] = center
    return Scan(projections, theta, refs["flats"], refs["darks"], metadata)


def read_hdf5(path: str | Path, *, lazy: bool | None = None) -> Scan:
    """Read an HDF5 scan, choosing NXtomo or DXchange from the file's contents.

    >>> scan = read_hdf5("tooth.h5")   # doctest: +SKIP
    """
    path = Path(path)
    with open_h5(path) as f:
        is_nxtomo = find_nxtomo_entry(f) is not None
        has_exchange = isinstance(f.get("/exchange/data"), h5py.Dataset)
        if not (is_nxtomo or has_exchange):
            found: list[str] = []
            f.visititems(
                lambda name, obj: (
                    found.append(f"/{name} {obj.shape}")
                    if isinstance(obj, h5py.Dataset) and obj.ndim == 3 and len(found) < 5
                    else None
                )
            )
            hint = f"; 3-D datasets in the file: {', '.join(found)}" if found else "; it has no 3-D dataset"
            raise ScanReadError(
                f"{path}: neither DXchange (/exchange/data) nor NeXus NXtomo (an NXentry with "
                f"definition NXtomo){hint}"
            )
    return read_nxtomo(path, lazy=lazy) if is_nxtomo else read_dxchange(path, lazy=lazy)
