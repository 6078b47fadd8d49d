"""The published PtychoNN data layout: diffraction ``.npz`` (``arr_0``: (lines, points, H, W)) and a
complex ``.npy`` of object patches ((lines, points, h, w)), e.g. ``20191008_39_diff.npz`` and
``20191008_39_amp_pha_10nm_full.npy`` of github.com/mcherukara/PtychoNN."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, ScanReadError


@dataclass
class PtychoDataset:
    """Diffraction patterns (N, H, W) float32 in scan order and, when labelled, amplitude/phase (N, h, w)."""

    patterns: np.ndarray
    amplitude: np.ndarray | None
    phase: np.ndarray | None
    grid: tuple[int, int]  # (lines, points) of the raster scan
    source: str

    def __len__(self) -> int:
        return len(self.patterns)


def _read_npz(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise ScanReadError(f"diffraction file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                raise ScanReadError(f"{path} holds {', '.join(data.files) or 'no arrays'}, not {key!r} (the published layout)")
            return data[key]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ScanReadError(f"{path} is not a readable .npz file ({exc})") from exc


def load_dataset(diffraction: str | Path, labels: str | Path | None = None, *, key: str = "arr_0") -> PtychoDataset:
    """Read a PtychoNN dataset: diffraction ``.npz`` (key ``arr_0``, (lines, points, H, W) or (N, H, W)) and,
    optionally, complex object patches ``.npy`` of the same leading shape.

    >>> ds = tm.ptycho.load_dataset("20191008_39_diff.npz", "20191008_39_amp_pha_10nm_full.npy")  # doctest: +SKIP
    >>> ds.patterns.shape, ds.grid                                                                  # doctest: +SKIP
    ((25921, 256, 256), (161, 161))
    """
    diffraction = Path(diffraction)
    diff = _read_npz(diffraction, key) if diffraction.suffix == ".npz" else _read_npy(diffraction)
    if diff.ndim == 4:
        grid = (int(diff.shape[0]), int(diff.shape[1]))
    elif diff.ndim == 3:
        grid = (1, int(diff.shape[0]))
    else:
        raise InputError(f"{diffraction}: diffraction must be (lines, points, H, W) or (N, H, W), got {diff.shape}")
    patterns = np.ascontiguousarray(diff.reshape(-1, *diff.shape[-2:]), dtype=np.float32)
    amplitude = phase = None
    if labels is not None:
        lab = _read_npy(Path(labels))
        if not np.iscomplexobj(lab):
            raise InputError(f"{labels}: labels must be complex object patches (amplitude * exp(i phase)), got {lab.dtype}")
        if lab.shape[: diff.ndim - 2] != diff.shape[:-2]:
            raise InputError(
                f"{labels}: {lab.shape[: diff.ndim - 2]} label positions but {diff.shape[:-2]} diffraction positions"
            )
        lab = lab.reshape(-1, *lab.shape[-2:])
        amplitude, phase = np.abs(lab).astype(np.float32), np.angle(lab).astype(np.float32)
    return PtychoDataset(patterns, amplitude, phase, grid, str(diffraction))


def _read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ScanReadError(f"{path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScanReadError(f"{path} is not a readable .npy array ({exc})") from exc
