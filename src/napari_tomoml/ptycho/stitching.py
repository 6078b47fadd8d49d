"""Stitching per-position patches into one image at their scan positions (weighted average)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .sim import check_positions, windows


def taper(n: int, edge: float = 0.25) -> np.ndarray:
    """An (n, n) weight that is 1 in the middle and falls to ~0 over ``edge * n`` pixels at each side.

    Patch edges are where a network's prediction is least reliable (the probe is weak there),
    so they count less when patches overlap.

    >>> w = taper(16)
    >>> float(w[8, 8]), bool(w[0, 0] < 0.05)
    (1.0, True)
    """
    ramp = max(1, int(round(edge * n)))
    x = np.ones(n)
    r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    x[:ramp] = r
    x[n - ramp :] = r[::-1]
    return np.outer(x, x).astype(np.float32)


def illumination(n: int, radius: float) -> np.ndarray:
    """An (n, n) weight for the area a probe lights: 1 inside ``radius / 2``, a cosine fall to 0 at ``radius``
    (pixels; e.g. 0.6 x :func:`~napari_tomoml.ptycho.probe_diameter`, a little beyond its 90 % energy disc).

    A network trained with this loss weight predicts only there, so its patches are stitched with it too.

    >>> w = illumination(32, 8.0)
    >>> float(w[16, 16]), float(w[16, 26]), w.shape
    (1.0, 0.0, (32, 32))
    """
    if radius <= 0:
        raise InputError(f"the illuminated radius must be positive, got {radius}")
    yy, xx = np.mgrid[:n, :n] - n // 2
    r = np.clip((np.hypot(yy, xx) - radius / 2) / (radius / 2), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * r)).astype(np.float32)


class Stitcher:
    """Accumulates weighted patches into a canvas that grows as positions arrive (live mode).

    >>> s = Stitcher((8, 8))
    >>> s.add(np.ones((2, 4, 4)), np.array([[2.0, 2.0], [2.0, 4.0]]))
    >>> s.image()[2, :8].tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """

    def __init__(self, shape: tuple[int, int] = (0, 0), weights: np.ndarray | str | None = "taper", grow: bool = True):
        self.num = np.zeros(tuple(int(s) for s in shape), np.float64)
        self.den = np.zeros_like(self.num)
        self.weights = weights
        self.grow = grow
        self.count = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.num.shape

    def _weight(self, n: int) -> np.ndarray:
        if self.weights is None:
            return np.ones((n, n), np.float32)
        if isinstance(self.weights, str):
            if self.weights != "taper":
                raise InputError(f"weights must be an (n, n) array, 'taper' or None, not {self.weights!r}")
            return taper(n)
        w = np.asarray(self.weights, np.float32)
        if w.shape != (n, n):
            raise InputError(f"stitch weights have shape {w.shape} but the patches are {n} x {n}")
        return w

    def _ensure(self, need: tuple[int, int]) -> None:
        if need[0] <= self.num.shape[0] and need[1] <= self.num.shape[1]:
            return
        # grow geometrically so a scan adding rows costs amortised O(1) copies
        new = (max(need[0], self.num.shape[0] + self.num.shape[0] // 2), max(need[1], self.num.shape[1] + self.num.shape[1] // 2))
        for name in ("num", "den"):
            old = getattr(self, name)
            grown = np.zeros(new, np.float64)
            grown[: old.shape[0], : old.shape[1]] = old
            setattr(self, name, grown)

    def add(self, patches: np.ndarray, positions: np.ndarray) -> None:
        """Add (N, n, n) patches centred at (N, 2) positions; parts outside the canvas are cut off."""
        patches = np.asarray(patches)
        if patches.ndim == 2:
            patches = patches[None]
        if patches.ndim != 3 or patches.shape[1] != patches.shape[2]:
            raise InputError(f"patches must be (N, n, n), got shape {patches.shape}")
        pos = check_positions(positions, len(patches))
        n = patches.shape[1]
        w = self._weight(n)
        corners = windows(pos, n)
        if self.grow and len(corners):
            self._ensure(tuple(int(v) for v in (corners.max(axis=0) + n)))
        h, wd = self.num.shape
        for patch, (y0, x0) in zip(patches, corners):
            ys, xs = max(y0, 0), max(x0, 0)
            ye, xe = min(y0 + n, h), min(x0 + n, wd)
            if ye <= ys or xe <= xs:
                continue
            sub = (slice(ys - y0, ye - y0), slice(xs - x0, xe - x0))
            self.num[ys:ye, xs:xe] += w[sub] * patch[sub]
            self.den[ys:ye, xs:xe] += w[sub]
        self.count += len(patches)

    def image(self, fill: float = 0.0, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The weighted average so far (float32); never-covered pixels are ``fill``."""
        num, den = (self.num, self.den) if shape is None else (self.num[: shape[0], : shape[1]], self.den[: shape[0], : shape[1]])
        out = np.full(num.shape, fill, np.float32)
        covered = den > 1e-6
        out[covered] = num[covered] / den[covered]
        return out

    def coverage(self) -> np.ndarray:
        """Total stitch weight per pixel (0 where nothing was measured)."""
        return self.den.astype(np.float32)


def stitch(
    phase_patches: np.ndarray, positions: np.ndarray, shape: tuple[int, int], *,
    weights: np.ndarray | str | None = "taper", fill: float = 0.0,
) -> np.ndarray:
    """Put (N, n, n) patches at their (y, x) centre positions into a ``shape`` image, overlaps averaged.

    The average is weighted by ``weights`` ((n, n), ``"taper"`` (default: patch edges count
    less) or ``None`` (plain mean)); pixels no patch covers are ``fill``.

    >>> import napari_tomoml as tm
    >>> img = tm.ptycho.stitch(np.full((2, 4, 4), 3.0), np.array([[2, 2], [2, 3]]), (6, 8))
    >>> img[2].tolist()
    [3.0, 3.0, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0]
    """
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"stitch shape must be (Y, X), got {shape}")
    s = Stitcher(shape, weights, grow=False)
    s.add(phase_patches, positions)
    return s.image(fill)
