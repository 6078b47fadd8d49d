"""One tiler for 2-D inference: overlapping tiles, smooth blending, bounded memory.

An image (channels, H, W) is cut into tiles of at most ``tile`` x ``tile`` pixels that overlap by
at least ``overlap`` pixels. Each tile's prediction is weighted by a window that is 1 inside and
falls off with a raised cosine across the overlap (never to 0, and not at the image border), and
the weighted sum is divided by the summed weights, so seams vanish and a model that returns its
input gives back the image exactly. Tiles from consecutive images are batched together; at most
``batch`` tiles plus the accumulators of the images in flight are held in memory.

Models that see several adjacent slices take their input windows from :func:`adjacent_indices`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable

import numpy as np

from ..errors import InputError

Predict = Callable[[np.ndarray], np.ndarray]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile starts covering ``length`` pixels with at least ``overlap`` shared pixels.

    >>> tile_starts(1000, 512, 32)
    [0, 244, 488]
    >>> tile_starts(300, 512, 32)
    [0]
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def fit_tile(length: int, tile: int, overlap: int, multiple: int = 8) -> int:
    """The smallest tile side (a multiple of ``multiple``, at most ``tile``) that covers ``length``
    with as few tiles as ``tile`` would need: no pixels are computed twice beyond the overlap.

    >>> fit_tile(1024, 512, 32)      # 3 tiles of 368 instead of 3 of 512
    368
    >>> fit_tile(300, 512, 32)
    300
    """
    if length <= tile:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (count - 1) * overlap) / count)
    return min(tile, -(-side // multiple) * multiple)


def adjacent_indices(z: int, nz: int, depth: int) -> np.ndarray:
    """Indices of the ``depth`` slices centred on ``z``, mirrored at the volume's ends.

    >>> adjacent_indices(0, 10, 5).tolist()
    [2, 1, 0, 1, 2]
    >>> adjacent_indices(0, 1, 3).tolist()
    [0, 0, 0]
    """
    half = depth // 2
    idx = np.arange(z - half, z + half + 1)
    idx = np.where(idx < 0, -idx, idx)
    idx = np.where(idx > nz - 1, 2 * (nz - 1) - idx, idx)
    return np.clip(idx, 0, nz - 1)


def _ramp(size: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """1-D blending window: raised-cosine edges of width ``overlap`` where a neighbour tile overlaps."""
    w = np.ones(size, np.float32)
    n = min(overlap, size // 2)
    if n > 0:
        # samples at half-pixel positions so the weight never reaches exactly 0
        edge = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        if rise:
            w[:n] = edge
        if fall:
            w[size - n :] = edge[::-1]
    return w


class Tiler:
    """Overlapping tile windows and blending weights for an ``height`` x ``width`` image.

    ``tile`` is the largest tile side; tiles are shrunk (see :func:`fit_tile`) so the image is
    covered with the fewest tiles and little recomputation.

    >>> t = Tiler(1000, 700, tile=512, overlap=32)
    >>> t.n_tiles, t.tile_shape
    (6, (360, 368))
    """

    def __init__(self, height: int, width: int, tile: int = 512, overlap: int = 32):
        if tile < 1 or overlap < 0 or overlap >= tile:
            raise InputError(f"tile={tile}, overlap={overlap}: need tile >= 1 and 0 <= overlap < tile")
        self.shape = (height, width)
        self.tile_shape = (fit_tile(height, tile, overlap), fit_tile(width, tile, overlap))
        ys, xs = tile_starts(height, self.tile_shape[0], overlap), tile_starts(width, self.tile_shape[1], overlap)
        self.windows = [
            (slice(y, y + self.tile_shape[0]), slice(x, x + self.tile_shape[1])) for y in ys for x in xs
        ]
        wy = [_ramp(self.tile_shape[0], overlap, i > 0, i < len(ys) - 1) for i in range(len(ys))]
        wx = [_ramp(self.tile_shape[1], overlap, j > 0, j < len(xs) - 1) for j in range(len(xs))]
        self.weights = [np.outer(a, b) for a in wy for b in wx]

    @property
    def n_tiles(self) -> int:
        return len(self.windows)


def predict_tiled_steps(
    images: Iterable[np.ndarray],
    predict: Predict,
    *,
    tile: int = 512,
    overlap: int = 32,
    batch: int = 4,
) -> Generator[list[tuple[int, np.ndarray]], None, None]:
    """Run ``predict`` over overlapping tiles of each (C, H, W) image; yield after every tile batch.

    ``predict`` maps a (B, C, h, w) float32 batch to (B, h, w) or (B, 1, h, w). Each yield is the
    list of ``(image_index, blended (H, W) result)`` finished by that batch (often empty). All
    images must share H and W.

    >>> imgs = [np.ones((1, 40, 50), np.float32)] * 2
    >>> done = [r for step in predict_tiled_steps(imgs, lambda b: b[:, 0], tile=32, overlap=8) for r in step]
    >>> [i for i, _ in done], done[0][1].shape
    ([0, 1], (40, 50))
    """
    tiler: Tiler | None = None
    pending: list[tuple[int, int, np.ndarray]] = []  # (image index, tile index, tile input)
    sums: dict[int, np.ndarray] = {}
    remaining: dict[int, int] = {}

    def flush() -> list[tuple[int, np.ndarray]]:
        out = np.asarray(predict(np.stack([crop for _, _, crop in pending])), dtype=np.float32)
        out = out.reshape(len(pending), *tiler.tile_shape)
        finished = []
        for (index, t, _), pred in zip(pending, out):
            win = tiler.windows[t]
            sums[index][win] += pred * tiler.weights[t]
            remaining[index] -= 1
            if remaining[index] == 0:
                finished.append((index, sums.pop(index) / norm))
                del remaining[index]
        pending.clear()
        return finished

    for index, image in enumerate(images):
        if image.ndim != 3:
            raise InputError(f"tiled prediction needs (channels, H, W) images, got shape {image.shape}")
        if tiler is None:
            tiler = Tiler(image.shape[1], image.shape[2], tile, overlap)
            norm = np.zeros(tiler.shape, np.float32)
            for win, weight in zip(tiler.windows, tiler.weights):
                norm[win] += weight
        elif image.shape[1:] != tiler.shape:
            raise InputError(f"all images must share one size: {image.shape[1:]} differs from {tiler.shape}")
        sums[index] = np.zeros(tiler.shape, np.float32)
        remaining[index] = tiler.n_tiles
        for t, win in enumerate(tiler.windows):
            pending.append((index, t, np.ascontiguousarray(image[(slice(None), *win)], dtype=np.float32)))
            if len(pending) == batch:
                yield flush()
    if pending:
        yield flush()
