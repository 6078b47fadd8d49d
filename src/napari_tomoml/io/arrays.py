"""Readers for plain array files: ``.npy`` (memory-mapped) and zarr (v2 or v3 stores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ScanReadError
from ._common import as_dask, even_theta, match_angles, read_angle_file, theta_to_radians, want_lazy
from .scan import Scan

# names looked up in a zarr group, first match wins (DXchange paths first)
ZARR_NAMES = {
    "projections": ("exchange/data", "data", "projections", "proj", "tomo"),
    "flats": ("exchange/data_white", "flats", "data_white", "flat", "white"),
    "darks": ("exchange/data_dark", "darks", "data_dark", "dark"),
    "theta": ("exchange/theta", "theta", "angles", "rotation_angle"),
}


def read_npy(path: str | Path, *, lazy: bool | None = None) -> Scan:
    """Read projections ``(angles, rows, cols)`` from a ``.npy`` file, memory-mapped unless ``lazy=False``.

    Pickled objects are refused. Angles come from a side file ``<name>.angles`` (degrees, one per
    line), else they are evenly spaced over [0°, 180°) with a note.

    >>> read_npy("projections.npy").lazy   # doctest: +SKIP
    True
    """
    path = Path(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ScanReadError(f"{path}: not a readable .npy file, corrupt or truncated? ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise ScanReadError(f"{path}: holds no plain array")
    if array.ndim != 3:
        raise InputError(
            f"{path}: array of shape {array.shape}; projections must be 3-D (angles, rows, cols)"
        )
    if lazy is False:
        array = np.array(array)
    notes: list[str] = []
    metadata: dict[str, Any] = {"source": str(path), "format": "npy", "notes": notes}
    sidecar = path.with_suffix(".angles")
    if sidecar.is_file():
        theta = match_angles(read_angle_file(sidecar), array.shape[0], sidecar, notes)
        metadata["angles_file"] = str(sidecar)
    else:
        theta = even_theta(array.shape[0])
        notes.append(f"no {sidecar.name} next to the file: angles assumed evenly spaced over [0°, 180°)")
    return Scan(array, theta, metadata=metadata)


def is_zarr(path: Path) -> bool:
    """True for a zarr store folder (v2 or v3 layout) or a folder named ``*.zarr``."""
    return path.is_dir() and (
        path.suffix.lower() == ".zarr"
        or any((path / m).is_file() for m in ("zarr.json", ".zgroup", ".zarray"))
    )


class _CheckedZarr:
    """A zarr array whose unreadable chunks raise :class:`ScanReadError` naming the file, when read."""

    def __init__(self, array: Any, path: Path):
        self.array, self.path = array, path
        self.shape, self.dtype, self.ndim, self.chunks = array.shape, array.dtype, array.ndim, array.chunks

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return self.array[key]
        except Exception as exc:  # noqa: BLE001 - codecs raise RuntimeError, stores OSError/ValueError...
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]  # one line for the CLI
            raise ScanReadError(
                f"{self.path}: cannot read zarr array {self.array.path!r} (a corrupt or missing chunk?): {reason}"
            ) from None


def _zarr_array(array: Any, path: Path, lazy: bool | None) -> Any:
    checked = _CheckedZarr(array, path)
    if want_lazy(lazy, int(np.prod(array.shape)) * array.dtype.itemsize):
        return as_dask(checked, array.chunks[0])
    return checked[...]


def read_zarr(path: str | Path, *, lazy: bool | None = None) -> Scan:
    """Read a zarr store: a single 3-D array, or a group with projections, flats, darks, theta.

    In a group the arrays are found by name: ``exchange/data`` (DXchange layout), ``data`` or
    ``projections``; ``flats``/``data_white``; ``darks``/``data_dark``; ``theta`` (degrees
    unless its ``units`` attribute says radians). A ``center`` attribute of the group is kept.

    >>> scan = read_zarr("scan.zarr", lazy=True)   # doctest: +SKIP
    """
    import zarr

    path = Path(path)
    try:
        node = zarr.open(store=str(path), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise ScanReadError(f"{path}: not a readable zarr store ({exc})") from None
    notes: list[str] = []
    metadata: dict[str, Any] = {"source": str(path), "format": "zarr", "notes": notes}
    found: dict[str, Any] = {}
    if isinstance(node, zarr.Array):
        found["projections"] = node
    else:
        for role, names in ZARR_NAMES.items():
            for name in names:
                try:
                    item = node[name]
                except (KeyError, ValueError):
                    continue
                if isinstance(item, zarr.Array):
                    found[role] = item
                    metadata.setdefault("arrays", {})[role] = name
                    break
        if "projections" not in found:
            arrays = sorted(node.array_keys())
            raise ScanReadError(
                f"{path}: no projections array; looked for {', '.join(ZARR_NAMES['projections'])}; "
                f"the group holds {arrays or 'no arrays'}"
            )
    data = found["projections"]
    # the centre may sit on the group (a written Scan) or on the array (a written volume's provenance)
    for attrs in (getattr(node, "attrs", {}), data.attrs):
        if isinstance(attrs.get("center"), (int, float)):
            metadata["center"] = float(attrs["center"])
            break
    if data.ndim != 3:
        raise InputError(f"{path}: array {data.path!r} has shape {data.shape}; projections must be 3-D")
    projections = _zarr_array(data, path, lazy)
    flats = _zarr_array(found["flats"], path, False) if "flats" in found else None
    darks = _zarr_array(found["darks"], path, False) if "darks" in found else None
    for role, ref in (("flats", flats), ("darks", darks)):
        if ref is None:
            notes.append(f"no {role} array in the store")
    if "theta" in found:
        theta = theta_to_radians(_zarr_array(found["theta"], path, False), found["theta"].attrs.get("units"), path)
        if theta.size != data.shape[0]:
            raise InputError(f"{path}: {theta.size} angles for {data.shape[0]} projections")
    else:
        theta = even_theta(data.shape[0])
        notes.append("no theta array in the store: angles assumed evenly spaced over [0°, 180°)")
    return Scan(projections, theta, flats, darks, metadata)
