"""Parallel-beam geometry and the sparse matrices of the projector pair.

Convention (tomopy's)
---------------------
A reconstructed slice is an ``n x n`` grid of unit pixels centred on the rotation axis. Pixel
``(row, col)`` has its centre at ``x = col + 0.5 - n/2`` (to the right) and ``r = row + 0.5 - n/2``
(downwards). At angle ``theta`` (radians) it projects onto the detector position

    u = center + x * cos(theta) - r * sin(theta)

measured in pixels **from the left edge** of the detector; detector pixel ``j`` spans
``[j, j + 1)``, its centre is at ``j + 0.5``. So ``center = n_det / 2`` (the default, as in tomopy)
puts the axis exactly in the middle of the detector, and a centre found by tomopy's
``find_center_vo`` can be used as it is.

scikit-image's ``radon``/``iradon`` put pixel and detector *centres* at index ``n // 2`` instead:
for an odd detector width that is the same as ``center = n_det / 2`` here; for an even width
scikit-image's axis sits at ``center = n_det / 2 + 0.5`` and its image grid is shifted by half a
pixel in both directions (so compare with it at odd sizes). Orientation is the same as in both
tomopy and scikit-image: at ``theta = 0`` a projection sums down the columns.

The projector is pixel-driven with linear interpolation: each pixel splats onto the two detector
pixels around ``u`` with weights ``1 - frac(u)`` and ``frac(u)``, and the back-projector gathers with
the same weights, so each is exactly the other's transpose. The detector is padded with zeros
wide enough that every pixel lands on it at every angle. Both come from one sparse pattern per
chunk of angles (8 bytes per pixel and angle: the left tap's index and ``frac``), multiplied with
many slices at once and kept in a bounded cache keyed by the geometry, so iterative solvers pay
for the build once; a geometry too large for the cache is streamed, each chunk built where it is
used. Where a geometry is used once for a few slices, :mod:`napari_tomoml.recon.direct` evaluates
the same back-projector without building anything.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import psutil
import scipy.sparse
import torch

# Bytes of sparse patterns kept between calls: a quarter of the machine's memory, at least 1 GiB
# (8 bytes per pixel and angle: the 640^2 x 181-angle tooth needs 0.6 GB). Of a geometry that
# does not fit, the chunks that do are kept and the rest streamed (built where used), instead of
# thrashing.
CACHE_BYTES = max(1 << 30, psutil.virtual_memory().total // 4)
# Pixel-angle pairs per chunk: bounds the memory of one build (8 bytes per pair) and keeps a
# chunk's products in cache-friendly blocks.
_CHUNK_PAIRS = 1 << 23


@dataclass(frozen=True)
class Geometry:
    """A parallel-beam slice geometry: ``n x n`` image, ``n_det`` detector pixels, angles, centre.

    >>> import numpy as np
    >>> g = Geometry(64, 64, tuple(np.linspace(0, np.pi, 90, endpoint=False)), 32.0)
    >>> g.n_angles, g.pad_left, g.padded_width
    (90, 16, 96)
    """

    n: int
    n_det: int
    theta: tuple[float, ...]
    center: float

    @property
    def n_angles(self) -> int:
        return len(self.theta)

    @property
    def _reach(self) -> float:
        """Farthest any pixel centre projects from the axis, plus one pixel for the right tap."""
        return self.n / math.sqrt(2) + 1.0

    @property
    def pad_left(self) -> int:
        """Zero detector pixels added on the left: every pixel then lands inside the padded detector,
        so the matrices need no bounds checks (taps off the real detector meet zeros, or are
        dropped after projecting)."""
        return max(1, math.ceil(self._reach - self.center) + 1)

    @property
    def padded_width(self) -> int:
        return self.pad_left + max(self.n_det, math.ceil(self.center + self._reach)) + 1

    def angle_chunks(self) -> list[slice]:
        per_chunk = max(1, min(self.n_angles, _CHUNK_PAIRS // (self.n * self.n)))
        return [slice(a, min(a + per_chunk, self.n_angles)) for a in range(0, self.n_angles, per_chunk)]


class _Workspace(threading.local):
    """Reusable flat buffers per thread: the build writes hundreds of MB per chunk, and on CPU
    touching fresh memory (page faults) costs as much as the arithmetic, so uncached matrices
    are built into the same buffers chunk after chunk."""

    def __init__(self):
        self.buffers: dict = {}

    def take(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        numel = math.prod(shape)
        key = (name, dtype, str(device))
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = self.buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buf[:numel].view(shape)


_WORKSPACE = _Workspace()


def detector_terms(
    geom: Geometry, angles: slice, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``row_term[row, a] + col_term[col, a]`` = padded detector index (pixel-centre units, >= 0)
    where pixel ``(row, col)`` lands at angle ``a``, both ``(n, angles)`` in ``dtype``.

    The sparse matrices and the direct back-projector add the same two rounded terms, so they
    interpolate at bit-identical positions.

    >>> g = Geometry(4, 4, (0.0,), 2.0)
    >>> r, c = detector_terms(g, slice(None), torch.float32, torch.device("cpu"))
    >>> (r[0, 0] + c[:, 0] - g.pad_left).tolist()   # at 0°: column j lands on detector pixel j
    [0.0, 1.0, 2.0, 3.0]
    """
    theta = torch.tensor(geom.theta[angles], dtype=torch.float64, device=device)
    coord = torch.arange(geom.n, dtype=torch.float64, device=device) + (0.5 - geom.n / 2)
    row_term = ((geom.center + geom.pad_left - 0.5) - coord[:, None] * torch.sin(theta)[None, :]).to(dtype)
    col_term = (coord[:, None] * torch.cos(theta)[None, :]).to(dtype)
    return row_term, col_term


def _pattern(geom: Geometry, angles: slice, dtype: torch.dtype, device: torch.device, reuse: bool):
    """Every pixel-angle pair of some angles, pixel-major (pair ``p * k + a``): the padded detector
    index of its left tap (int32, angle ``a`` of the chunk starting at ``a * padded_width``) and the
    weight ``frac`` of its right tap, one index further. With ``reuse`` the arrays live in the
    thread's workspace, valid until the next build.
    """
    row_term, col_term = detector_terms(geom, angles, dtype, device)
    n, k = row_term.shape
    if reuse:
        frac = _WORKSPACE.take("frac", (n, n, k), dtype, device)
        cols = _WORKSPACE.take("cols", (n, n, k), torch.int32, device)
    else:
        frac = torch.empty((n, n, k), dtype=dtype, device=device)
        cols = torch.empty((n, n, k), dtype=torch.int32, device=device)
    u = torch.add(col_term[None, :, :], row_term[:, None, :], out=frac)
    cols.copy_(u)  # truncation = floor, as u >= 0
    u.sub_(cols)
    cols.add_(torch.arange(k, dtype=torch.int32, device=device) * geom.padded_width)
    return cols.view(-1), frac.view(-1)


def _csr(crow, cols, vals, size) -> torch.Tensor:
    # The indices are valid by construction; torch's "beta" notice would only alarm users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, vals, size=size, check_invariants=False)


_ONES: dict = {}


def _ones(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A shared read-only vector of ones (the values of the pattern's all-ones matrix)."""
    key = (dtype, str(device))
    ones = _ONES.get(key)
    if ones is None or ones.numel() < numel:
        ones = _ONES[key] = torch.ones(numel, dtype=dtype, device=device)
    return ones[:numel]


def _scatter_project(cols: torch.Tensor, frac: torch.Tensor, flat: torch.Tensor, k: int, width: int) -> torch.Tensor:
    """The transposed products as scatter-adds, for GPUs (their atomics make these fast)."""
    pixels = flat.repeat_interleave(k, dim=0)  # (pairs, S)
    right = pixels * frac[:, None]
    out = torch.zeros((width, flat.shape[1]), dtype=flat.dtype, device=flat.device)
    out.index_add_(0, cols, pixels.sub_(right))
    out[1:].index_add_(0, cols, right)
    return out


class SparseProjector:
    """The projector pair of one geometry on one device, from one sparse pattern per chunk of angles.

    Linear interpolation ``(1 - f) p[l] + f p[l + 1] = p[l] + f (p[l + 1] - p[l])`` makes the
    back-projection two CSR products with one pattern, ``N @ p + F @ diff(p)`` (``N`` holds ones,
    ``F`` the fractions ``f``), and the projection their transposes,
    ``N.T x - F.T x + shift(F.T x)``: 8 bytes per pixel and angle, a quarter of two CSR matrices
    holding both taps. On CPU the transposed products are scipy's (torch's CSR transpose costs a
    sort); on a GPU they are scatter-adds.

    ``backproject`` maps padded projections ``(angles * padded_width, S)`` to ``(n * n, S)``;
    ``project`` maps ``(n * n, S)`` to ``(angles * padded_width, S)``. ``S`` is any number of slices.
    """

    def __init__(self, geom: Geometry, dtype: torch.dtype, device: torch.device):
        self.geom, self.dtype, self.device = geom, dtype, device
        self.chunks = geom.angle_chunks()
        pair_bytes = 4 + torch.empty(0, dtype=dtype).element_size()
        largest = max(c.stop - c.start for c in self.chunks) * geom.n**2 * pair_bytes
        # the chunks that fit are kept (a fixed set, so the cache never thrashes); the others are
        # built again where they are used
        self.kept = min(len(self.chunks), CACHE_BYTES // largest)
        self.cacheable = self.kept == len(self.chunks)

    def _key(self, index: int):
        return (self.geom, self.dtype, str(self.device), index)

    def cached(self) -> bool:
        """Whether every chunk's pattern is in the cache."""
        return all(_CACHE.get(self._key(i)) is not None for i in range(len(self.chunks)))

    def pattern(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk ``index``'s ``(cols, frac)``: cached, or built into the workspace (valid until the
        next build in this thread) where it is beyond what the cache keeps of this geometry."""
        key = self._key(index)
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        keep = index < self.kept
        pattern = _pattern(self.geom, self.chunks[index], self.dtype, self.device, reuse=not keep)
        if keep:
            _CACHE.put(key, pattern)
        return pattern

    def _shape(self, index: int) -> tuple[int, int]:
        angles = self.chunks[index]
        return self.geom.n**2, (angles.stop - angles.start) * self.geom.padded_width

    def backproject_chunk(self, index: int, pattern, block: torch.Tensor) -> torch.Tensor:
        """Chunk ``index``'s padded projections ``(k * padded_width, S)`` → ``(n * n, S)``."""
        cols, frac = pattern
        n_pix, width = self._shape(index)
        k = cols.numel() // n_pix
        crow = torch.arange(0, cols.numel() + 1, k, dtype=torch.int32, device=self.device)
        step = torch.zeros_like(block)
        torch.sub(block[1:], block[:-1], out=step[:-1])  # a right tap never crosses into the next angle
        ones = _csr(crow, cols, _ones(cols.numel(), self.dtype, self.device), (n_pix, width))
        out = ones @ block
        return out.add_(_csr(crow, cols, frac, (n_pix, width)) @ step)

    def project_chunk(self, index: int, pattern, flat: torch.Tensor) -> torch.Tensor:
        """``(n * n, S)`` → chunk ``index``'s padded projections ``(k * padded_width, S)``."""
        cols, frac = pattern
        n_pix, width = self._shape(index)
        k = cols.numel() // n_pix
        if self.device.type != "cpu":
            return _scatter_project(cols, frac, flat, k, width)
        x = flat.detach().numpy()
        crow = np.arange(0, cols.numel() + 1, k, dtype=np.int32)
        c = cols.numpy()
        ones = scipy.sparse.csr_matrix((_ones(cols.numel(), self.dtype, self.device).numpy(), c, crow), (n_pix, width))
        right = scipy.sparse.csr_matrix((frac.numpy(), c, crow), (n_pix, width)).T @ x
        out = torch.from_numpy(ones.T @ x - right)
        out[1:] += torch.from_numpy(right[:-1])
        return out

    def backproject(self, padded: torch.Tensor) -> torch.Tensor:
        """``(angles * padded_width, S)`` → ``(n * n, S)``."""
        width = self.geom.padded_width
        out = torch.zeros((self.geom.n**2, padded.shape[1]), dtype=self.dtype, device=self.device)
        for i, angles in enumerate(self.chunks):
            out += self.backproject_chunk(i, self.pattern(i), padded[angles.start * width : angles.stop * width])
        return out

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """``(n * n, S)`` → ``(angles * padded_width, S)``."""
        return torch.cat([self.project_chunk(i, self.pattern(i), flat) for i in range(len(self.chunks))])


class _MatrixCache:
    """A thread-safe LRU of sparse patterns (tuples of tensors) bounded by their total size in bytes."""

    def __init__(self):
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(parts: tuple[torch.Tensor, ...]) -> int:
        return sum(p.numel() * p.element_size() for p in parts)

    def get(self, key):
        with self._lock:
            mat = self._items.get(key)
            if mat is not None:
                self._items.move_to_end(key)
            return mat

    def put(self, key, mat: tuple[torch.Tensor, ...]) -> None:
        size = self._size(mat)
        with self._lock:
            if size > CACHE_BYTES or key in self._items:
                return
            while self._items and self._bytes + size > CACHE_BYTES:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size(old)
            self._items[key] = mat
            self._bytes += size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


_CACHE = _MatrixCache()


def clear_cache() -> None:
    """Free the cached projector patterns and this thread's build buffers (rebuilt on demand)."""
    _CACHE.clear()
    _ONES.clear()
    _WORKSPACE.buffers.clear()


def make_geometry(n: int, n_det: int, theta: np.ndarray, center: float) -> Geometry:
    """A hashable geometry; angles rounded to float64 so equal scans share cached matrices."""
    return Geometry(
        int(n), int(n_det), tuple(float(t) for t in np.asarray(theta, dtype=np.float64)), float(center)
    )


def angular_weights(theta: np.ndarray) -> np.ndarray:
    """Per-angle weights (radians) of a back-projection integral over a half turn.

    Each angle gets half the gap to its neighbours on the circle of directions (angles modulo
    ``pi``), so uneven sets weigh correctly, a full 360° scan counts each direction once overall
    (weights sum to ``pi``), and repeated angles share their weight.

    >>> import numpy as np
    >>> w = angular_weights(np.linspace(0, np.pi, 4, endpoint=False))
    >>> bool(np.allclose(w, np.pi / 4))
    True
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.size == 1:
        return np.array([math.pi])
    folded = np.mod(theta, math.pi)
    order = np.argsort(folded, kind="stable")
    s = folded[order]
    gaps = np.diff(np.concatenate([s, [s[0] + math.pi]]))  # gap to the next direction, cyclic
    sorted_w = 0.5 * (gaps + np.roll(gaps, 1))
    weights = np.empty_like(theta)
    weights[order] = sorted_w
    return weights
