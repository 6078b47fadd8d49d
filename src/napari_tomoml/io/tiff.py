"""TIFF readers: a folder of one-projection files, or one multi-page stack file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import InputError, ScanReadError
from ._common import FrameSource, as_dask, even_theta, match_angles, read_angle_file, want_lazy
from .scan import Scan

TIFF_SUFFIXES = (".tif", ".tiff")

# name tokens (letters only, lower case) that mark a reference frame in a projections folder
FLAT_WORDS = {"flat", "flats", "flatfield", "white", "whites", "ff", "bright", "open", "ob"}
DARK_WORDS = {"dark", "darks", "darkfield", "df", "black"}
ANGLE_FILES = ("angles.txt", "theta.txt")


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``img_2`` before ``img_10``.

    >>> sorted(["p10.tif", "p2.tif"], key=natural_key)
    ['p2.tif', 'p10.tif']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def frame_role(name: str) -> str:
    """``"flat"``, ``"dark"`` or ``"projection"`` from a file name.

    >>> frame_role("flat_00001.tiff"), frame_role("DF_0.tif"), frame_role("raw_00003.tiff")
    ('flat', 'dark', 'projection')
    """
    tokens = set(re.findall(r"[a-z]+", Path(name).stem.lower()))
    if tokens & DARK_WORDS:
        return "dark"
    if tokens & FLAT_WORDS:
        return "flat"
    return "projection"


def _imread(path: Path, **kwargs: Any) -> np.ndarray:
    try:
        return tifffile.imread(path, **kwargs)
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise ScanReadError(f"{path}: not a readable TIFF file, corrupt or truncated? ({exc})") from None


class TiffFolderFrames(FrameSource):
    """Projection files of a folder, one 2-D image each, read on demand."""

    serial_reads = False  # one file per frame: threads can decode in parallel

    def __init__(self, folder: Path, files: list[Path], frame_shape: tuple[int, int], dtype: Any):
        super().__init__(folder, (len(files),) + tuple(frame_shape), dtype)
        self.files = files

    def _read(self, frames: np.ndarray, rest: tuple[Any, ...]) -> np.ndarray:
        out = None
        for j, i in enumerate(frames):
            image = _imread(self.files[i])
            if image.shape != self.shape[1:]:
                raise InputError(
                    f"{self.files[i]}: image of shape {image.shape}, but the folder's projections are "
                    f"{self.shape[1:]}; every projection must have the same size"
                )
            part = image[rest]
            if out is None:
                out = np.empty((len(frames),) + part.shape, dtype=self.dtype)
            out[j] = part
        return out


class TiffStackFrames(FrameSource):
    """Pages of one multi-page TIFF, read on demand; the file stays open while the object lives."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any):
        super().__init__(path, shape, dtype)
        self._tif: tifffile.TiffFile | None = None

    def _drop_handles(self, state: dict[str, Any]) -> None:
        state["_tif"] = None

    def _read(self, frames: np.ndarray, rest: tuple[Any, ...]) -> np.ndarray:
        try:
            if self._tif is None:
                self._tif = tifffile.TiffFile(self.path)
            pages = self._tif.asarray(key=[int(i) for i in frames], series=0)
        except (OSError, ValueError, IndexError, KeyError) as exc:
            raise ScanReadError(
                f"{self.path}: cannot read TIFF pages, corrupt or truncated? ({exc})"
            ) from None
        return pages.reshape((len(frames),) + self.shape[1:])[(slice(None),) + rest]


def _reference_stack(files: list[Path], frame_shape: tuple[int, ...], role: str) -> np.ndarray | None:
    if not files:
        return None
    frames = []
    for f in files:
        image = _imread(f)
        image = image[None] if image.ndim == 2 else image
        if image.shape[1:] != frame_shape:
            raise InputError(
                f"{f}: {role} image of shape {image.shape[1:]}, but projections are {frame_shape}"
            )
        frames.append(image)
    return np.concatenate(frames)


def _sidecar_angles(path: Path) -> Path | None:
    candidate = path.with_suffix(".angles")
    return candidate if candidate.is_file() else None


def read_tiff_folder(folder: str | Path, *, lazy: bool | None = None) -> Scan:
    """Read a folder of TIFF projections (one 2-D image per file) with optional flats/darks.

    Files whose name contains a word like flat/white/ff/bright are flats, dark/df darks; the
    rest are projections in natural order (``p2`` before ``p10``). Angles (degrees, one per
    line) come from ``angles.txt``, ``theta.txt`` or a ``*.angles`` file. When the list is
    longer than the projections because the first and last angles are repeated (padding for
    darks/flats, as in Diamond I13 files), each run of repeats is collapsed to one value and a
    note says so; if the counts still differ, :class:`InputError` names both. Without an
    angles file the angles are evenly spaced over [0°, 180°), with a note.

    >>> read_tiff_folder("savu_i13_24737_tiff").shape   # doctest: +SKIP
    (91, 135, 160)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ScanReadError(f"{folder}: not a folder")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise ScanReadError(f"{folder}: the folder holds no TIFF files (*.tif, *.tiff)")
    groups: dict[str, list[Path]] = {"projection": [], "flat": [], "dark": []}
    for f in files:
        groups[frame_role(f.name)].append(f)
    projection_files = groups["projection"]
    if not projection_files:
        raise ScanReadError(f"{folder}: every TIFF file is named as a flat or dark; no projections found")
    try:
        with tifffile.TiffFile(projection_files[0]) as tif:
            series = tif.series[0]
            frame_shape, dtype = tuple(series.shape), series.dtype
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise ScanReadError(
            f"{projection_files[0]}: not a readable TIFF file, corrupt or truncated? ({exc})"
        ) from None
    if len(frame_shape) != 2:
        raise InputError(
            f"{projection_files[0]}: image of shape {frame_shape}; each projection file must hold one "
            "2-D grey-level image"
        )
    source = TiffFolderFrames(folder, projection_files, frame_shape, dtype)
    n = len(projection_files)
    projections = (
        as_dask(source) if want_lazy(lazy, n * int(np.prod(frame_shape)) * dtype.itemsize) else source[:]
    )
    flats = _reference_stack(groups["flat"], frame_shape, "flat")
    darks = _reference_stack(groups["dark"], frame_shape, "dark")
    notes: list[str] = []
    for name, ref, words in (("flats", flats, "flat/white/ff"), ("darks", darks, "dark/df")):
        if ref is None:
            notes.append(f"no {name} files in the folder (names with {words})")
    angle_file = next((folder / a for a in ANGLE_FILES if (folder / a).is_file()), None)
    if angle_file is None:
        angle_file = next(iter(sorted(folder.glob("*.angles"), key=lambda p: natural_key(p.name))), None)
    if angle_file is not None:
        theta = match_angles(read_angle_file(angle_file), n, angle_file, notes)
    else:
        theta = even_theta(n)
        notes.append(
            "no angles file (angles.txt, theta.txt, *.angles): angles assumed evenly spaced over [0°, 180°)"
        )
    metadata = {
        "source": str(folder),
        "format": "tiff-folder",
        "angles_file": str(angle_file) if angle_file else None,
        "files": {
            "projections": [projection_files[0].name, projection_files[-1].name],
            "flats": [f.name for f in groups["flat"]],
            "darks": [f.name for f in groups["dark"]],
        },
        "notes": notes,
    }
    return Scan(projections, theta, flats, darks, metadata)


def read_tiff_stack(path: str | Path, *, lazy: bool | None = None) -> Scan:
    """Read one multi-page TIFF file as projections ``(pages, rows, cols)``.

    Angles come from the ``theta_deg`` entry that :func:`~napari_tomoml.io.write_tiff_stack`
    stores in the file's description, else from a side file ``<name>.angles`` (degrees), else
    they are evenly spaced over [0°, 180°) with a note.

    >>> scan = read_tiff_stack("projections.tif", lazy=True)   # doctest: +SKIP
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            described = (tif.shaped_metadata or [{}])[0] or {}
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise ScanReadError(f"{path}: not a readable TIFF file, corrupt or truncated? ({exc})") from None
    if len(shape) != 3:
        raise InputError(
            f"{path}: image of shape {shape}; a projection stack must be 3-D (pages = angles, rows, cols)"
        )
    source = TiffStackFrames(path, shape, dtype)
    if want_lazy(lazy, int(np.prod(shape)) * dtype.itemsize):
        projections = as_dask(source)
    else:
        projections = _imread(path).reshape(shape)
    notes: list[str] = []
    metadata: dict[str, Any] = {"source": str(path), "format": "tiff-stack", "notes": notes}
    sidecar = _sidecar_angles(path)
    if "theta_deg" in described:
        theta = np.radians(np.asarray(described["theta_deg"], dtype=np.float64))
        if theta.size != shape[0]:
            raise InputError(f"{path}: the description lists {theta.size} angles for {shape[0]} pages")
    elif sidecar is not None:
        theta = match_angles(read_angle_file(sidecar), shape[0], sidecar, notes)
        metadata["angles_file"] = str(sidecar)
    else:
        theta = even_theta(shape[0])
        notes.append(
            f"no angles stored in the file nor {path.with_suffix('.angles').name}: "
            "angles assumed evenly spaced over [0°, 180°)"
        )
    if "center" in described:
        metadata["center"] = float(described["center"])
    return Scan(projections, theta, metadata=metadata)
