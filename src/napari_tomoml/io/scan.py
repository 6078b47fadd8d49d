"""The :class:`Scan` container: projections, angles, flats and darks of one tomography scan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


def _is_lazy(array: Any) -> bool:
    """True when ``array`` is not held in RAM (dask, memmap, an open file dataset)."""
    return not isinstance(array, np.ndarray) or isinstance(array, np.memmap)


def _where(metadata: dict[str, Any]) -> str:
    source = metadata.get("source")
    return f"{Path(source).name}: " if source else ""


@dataclass
class Scan:
    """One tomography scan as read from a file.

    ``projections`` is ``(angles, rows, cols)``, a numpy array, a memmap or a dask array (lazy);
    ``theta`` the rotation angles in radians (float32, one per projection); ``flats`` and
    ``darks`` are ``(n, rows, cols)`` or ``None``; ``metadata`` holds ``source`` (path),
    ``format``, ``notes`` (assumptions the reader made) and, where the file says, ``center``
    (pixels from the left edge) and ``units``.

    >>> import numpy as np
    >>> scan = Scan(np.zeros((3, 2, 4), np.float32), np.radians([0, 60, 120]))
    >>> scan.shape, scan.theta.dtype
    ((3, 2, 4), dtype('float32'))
    """

    projections: Any
    theta: Any
    flats: Any = None
    darks: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = _where(self.metadata)
        if not hasattr(self.projections, "ndim"):
            self.projections = np.asarray(self.projections)
        if self.projections.ndim != 3:
            shape = tuple(self.projections.shape)
            raise InputError(f"{where}projections must be 3-D (angles, rows, cols); got shape {shape}")
        if np.dtype(self.projections.dtype).kind not in "uif":
            raise InputError(f"{where}projections must be numeric; got dtype {self.projections.dtype}")
        if 0 in tuple(self.projections.shape):
            raise InputError(
                f"{where}the scan is empty: projections of shape {tuple(self.projections.shape)} "
                "(angles, rows, cols); nothing to read or reconstruct"
            )
        theta = np.asarray(self.theta, dtype=np.float64)
        if theta.ndim != 1 or theta.shape[0] != self.projections.shape[0]:
            raise InputError(
                f"{where}{theta.size} angles for {self.projections.shape[0]} projections; "
                "give one angle (radians) per projection"
            )
        if not np.all(np.isfinite(theta)):
            raise InputError(f"{where}the angles contain NaN or inf")
        self.theta = theta.astype(np.float32)
        self.flats = self._check_reference(self.flats, "flats", where)
        self.darks = self._check_reference(self.darks, "darks", where)
        self.metadata = dict(self.metadata)
        self.metadata.setdefault("notes", [])

    def _check_reference(self, ref: Any, name: str, where: str) -> Any:
        if ref is None:
            return None
        if not hasattr(ref, "ndim"):
            ref = np.asarray(ref)
        if ref.ndim == 2:  # a single flat or dark frame
            ref = ref[None]
        if ref.ndim != 3 or tuple(ref.shape[1:]) != tuple(self.projections.shape[1:]):
            raise InputError(
                f"{where}{name} have shape {tuple(ref.shape)} but projections are "
                f"{tuple(self.projections.shape)}; {name} must be (n, {self.projections.shape[1]}, "
                f"{self.projections.shape[2]})"
            )
        if ref.shape[0] == 0:
            return None
        return ref

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(angles, rows, cols)`` of the projections."""
        return tuple(int(s) for s in self.projections.shape)  # type: ignore[return-value]

    @property
    def lazy(self) -> bool:
        """True when the projections stay on disk until used (dask array or memmap)."""
        return _is_lazy(self.projections)

    def summary_dict(self) -> dict[str, Any]:
        """The facts of :meth:`summary` as a JSON-friendly dict.

        >>> import numpy as np
        >>> Scan(np.zeros((2, 1, 1)), [0.0, np.pi / 2]).summary_dict()["angle_max_deg"]
        90.0
        """
        deg = np.degrees(self.theta.astype(np.float64))
        return {
            "source": self.metadata.get("source"),
            "format": self.metadata.get("format"),
            "shape": list(self.shape),
            "dtype": str(np.dtype(self.projections.dtype)),
            "lazy": self.lazy,
            "angle_min_deg": round(float(deg.min()), 4),
            "angle_max_deg": round(float(deg.max()), 4),
            "n_flats": 0 if self.flats is None else int(self.flats.shape[0]),
            "n_darks": 0 if self.darks is None else int(self.darks.shape[0]),
            "center": self.metadata.get("center"),
            "notes": list(self.metadata.get("notes", [])),
        }

    def summary(self) -> str:
        """A few lines a person can read: shape, dtype, angle range, flats/darks, lazy or not.

        >>> import numpy as np
        >>> print(Scan(np.zeros((2, 1, 3), np.float32), [0.0, np.pi / 2]).summary())
        projections: 2 x 1 x 3 (angles x rows x cols), float32, in memory
        angles: 0.0° .. 90.0° (2 angles)
        flats: 0, darks: 0
        """
        d = self.summary_dict()
        lines = []
        if d["source"]:
            lines.append(f"{Path(d['source']).name} ({d['format']})")
        storage = "lazy (read on demand)" if d["lazy"] else "in memory"
        lines.append(
            "projections: {} x {} x {} (angles x rows x cols), {}, {}".format(
                *d["shape"], d["dtype"], storage
            )
        )
        lines.append(
            f"angles: {d['angle_min_deg']:.1f}° .. {d['angle_max_deg']:.1f}° ({d['shape'][0]} angles)"
        )
        lines.append(f"flats: {d['n_flats']}, darks: {d['n_darks']}")
        if d["center"] is not None:
            lines.append(f"rotation centre (from file): {d['center']} px")
        lines.extend(f"note: {n}" for n in d["notes"])
        return "\n".join(lines)
