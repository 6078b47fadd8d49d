"""One seamless tiler for 2-D inference: tiles with a receptive-field margin, centres kept.

A convolutional network's output pixel depends only on input pixels within its receptive-field
radius ``r``, and a network that pools ``n`` times is translation-equivariant for shifts by
multiples of ``m = 2**n``. So an image (channels, H, W) is first reflect-padded at the bottom and
right to a multiple of ``m`` (exactly what the networks do themselves on a whole image), then
cut into tiles whose starts and sides are multiples of ``m`` and that overlap by at least twice a
margin ``>= r``; from each tile only the part at least one margin away from its inner edges is
kept (neighbours meet half-way through their overlap). Every kept pixel then saw exactly what it
sees in a whole-image pass: the tiled prediction equals the whole-image one up to float
rounding, with no blending and no seams.

Models declare ``receptive_field`` and ``size_multiple`` (see :class:`~napari_tomoml.models.unet.UNet`);
:func:`~napari_tomoml.inference.runner.torch_predictor` passes them on with the predict function.
The tile side comes from the memory available (:func:`auto_tile`) unless given. Tiles from
consecutive images are batched; at most ``batch`` tiles plus the outputs of the images in
flight are held in memory.

Models that see several adjacent slices take their input windows from :func:`adjacent_indices`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable
from typing import Any

import numpy as np

from ..errors import InputError

Predict = Callable[[np.ndarray], np.ndarray]
# Largest automatic tile: a 1024² TomoGAN slice in one tile runs at 1.01x the bare network's
# forward pass, in 512 px tiles at 1.26x (their margins recompute 1.6x the pixels), for 1.2 GiB
# instead of 0.55 GiB; the free-memory bound of auto_tile shrinks it where memory is short
MAX_AUTO_TILE = 1024


def _ceil_to(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Evenly spaced tile starts (multiples of ``multiple``) covering ``length`` pixels, with
    consecutive tiles sharing at least ``overlap`` pixels. The last tile ends at ``length``, which
    must then be a multiple of ``multiple`` too (pad the image first).

    >>> tile_starts(1000, 512, 32)
    [0, 244, 488]
    >>> tile_starts(1024, 512, 128, multiple=8)
    [0, 256, 512]
    >>> tile_starts(300, 512, 32)
    [0]
    """
    if length <= tile:
        return [0]
    n, t = length // multiple, tile // multiple  # in blocks of `multiple` pixels
    stride = (tile - overlap) // multiple
    if stride < 1:
        raise InputError(f"tile {tile} is too small for an overlap of {overlap} pixels")
    count = math.ceil((n - t) / stride) + 1
    return [multiple * round(i * (n - t) / (count - 1)) for i in range(count)]


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
    return min(tile, _ceil_to(side, multiple))


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


def default_batch(device: Any) -> int:
    """Tiles run at once by default: 1 on a CPU, 4 on an accelerator.

    On a CPU a batch of tiles is no faster — TomoGAN on 1024² slices, 1 thread: 5.1 s per slice
    with batches of 1, 6.6 s with 4 — and each extra tile holds its activations in memory.

    >>> default_batch("cpu"), default_batch("cuda")
    (1, 4)
    """
    return 1 if str(device).startswith("cpu") else 4


def auto_tile(bytes_per_pixel: float, *, batch: int = 1, multiple: int = 8, memory_fraction: float = 0.25,
              maximum: int = MAX_AUTO_TILE, available: int | None = None) -> int:
    """The tile side whose ``batch`` tiles need at most ``memory_fraction`` of the available memory.

    ``bytes_per_pixel`` is the network's working memory per input pixel (activations of one
    forward pass); ``available`` defaults to what psutil reports. Never below 128 px.

    >>> auto_tile(4000, batch=4, available=64 * 2**30)
    1024
    >>> auto_tile(4000, batch=4, available=4 * 2**30)
    256
    """
    if available is None:
        import psutil

        available = psutil.virtual_memory().available
    side = int(math.sqrt(memory_fraction * available / (batch * bytes_per_pixel)))
    return max(128, min(maximum, side // multiple * multiple))


def _pad(image: np.ndarray, multiple: int) -> np.ndarray:
    """Bottom/right padding to a multiple, as :func:`~napari_tomoml.models.tomogan.pad_to_multiple` does."""
    h, w = image.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return image
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(image, ((0, 0), (0, ph), (0, pw)), mode=mode)


class Tiler:
    """Tile windows of an ``height`` x ``width`` image and the part of each tile that is kept.

    ``margin`` (pixels, at least ``overlap // 2``) is rounded up to ``multiple``; the image is
    padded to ``padded_shape`` (multiples of ``multiple``) and tiles are shrunk (see
    :func:`fit_tile`) to cover it with the fewest tiles. ``windows[i]`` is tile i's input in the
    padded image; ``keep[i]`` (where its result goes in the output) and ``crop[i]`` (which part
    of the tile's output) tile the ``height`` x ``width`` output exactly once.

    >>> t = Tiler(1000, 700, tile=512, overlap=32)
    >>> t.n_tiles, t.tile_shape
    (6, (355, 366))
    >>> t = Tiler(1024, 1024, tile=512, margin=65, multiple=8)
    >>> t.margin, t.n_tiles, t.tile_shape
    (72, 9, (440, 440))
    """

    def __init__(self, height: int, width: int, tile: int = 512, overlap: int = 32, *, margin: int = 0,
                 multiple: int = 1):
        multiple = max(1, int(multiple))
        self.margin = _ceil_to(max(int(margin), (int(overlap) + 1) // 2), multiple)
        if tile < 1 or overlap < 0:
            raise InputError(f"tile={tile}, overlap={overlap}: need tile >= 1 and overlap >= 0")
        self.shape = (int(height), int(width))
        self.multiple = multiple
        self.padded_shape = (_ceil_to(height, multiple), _ceil_to(width, multiple))
        tile = tile // multiple * multiple
        overlap = 2 * self.margin
        longest = max(self.padded_shape)
        if tile <= overlap and tile < longest:
            raise InputError(
                f"tile {tile} px is too small for this model: it needs margins of {self.margin} px on each side "
                f"(its receptive field), so use tiles of at least {overlap + multiple} px"
            )
        self.tile_shape = tuple(fit_tile(n, tile, overlap, multiple) for n in self.padded_shape)
        axes = []
        for n, size, out_len in zip(self.padded_shape, self.tile_shape, self.shape):
            starts = tile_starts(n, size, overlap, multiple)
            # neighbours hand over half-way through their overlap; both sides are > margin from an inner edge
            cuts = [0] + [min((a + size + b) // 2, out_len) for a, b in zip(starts, starts[1:])] + [out_len]
            axes.append([(s, slice(s, s + size), slice(lo, hi), slice(lo - s, hi - s))
                         for s, lo, hi in zip(starts, cuts, cuts[1:])])
        self.windows, self.keep, self.crop = [], [], []
        for _, wy, ky, cy in axes[0]:
            for _, wx, kx, cx in axes[1]:
                self.windows.append((wy, wx))
                self.keep.append((ky, kx))
                self.crop.append((cy, cx))

    @property
    def n_tiles(self) -> int:
        return len(self.windows)


def predict_tiled_steps(
    images: Iterable[np.ndarray],
    predict: Predict,
    *,
    tile: int | None = 512,
    overlap: int = 32,
    batch: int = 4,
    margin: int | None = None,
    multiple: int | None = None,
) -> Generator[list[tuple[int, np.ndarray]], None, None]:
    """Run ``predict`` over tiles of each (C, H, W) image; yield after every tile batch.

    ``predict`` maps a (B, C, h, w) float32 batch to (B, K, h, w) (or (B, h, w)). Each yield is
    the list of ``(image_index, result)`` finished by that batch (often empty); a result is
    (H, W) when K is 1, else (K, H, W). All images must share H and W. ``margin`` and
    ``multiple`` default to the ``receptive_field`` and ``size_multiple`` attributes of
    ``predict`` (set by :func:`~napari_tomoml.inference.runner.torch_predictor`); ``tile=None``
    picks the side from ``predict.bytes_per_pixel`` and the free memory.

    >>> imgs = [np.ones((1, 40, 50), np.float32)] * 2
    >>> done = [r for step in predict_tiled_steps(imgs, lambda b: b[:, 0], tile=32, overlap=8) for r in step]
    >>> [i for i, _ in done], done[0][1].shape
    ([0, 1], (40, 50))
    """
    margin = int(getattr(predict, "receptive_field", 0)) if margin is None else int(margin)
    multiple = int(getattr(predict, "size_multiple", 1)) if multiple is None else int(multiple)
    if tile is None:
        tile = auto_tile(getattr(predict, "bytes_per_pixel", 4096), batch=batch, multiple=multiple)
    tiler: Tiler | None = None
    pending: list[tuple[int, int, np.ndarray]] = []  # (image index, tile index, tile input)
    outputs: dict[int, np.ndarray] = {}
    remaining: dict[int, int] = {}

    def flush() -> list[tuple[int, np.ndarray]]:
        out = np.asarray(predict(np.stack([crop for _, _, crop in pending])), dtype=np.float32)
        out = out.reshape(len(pending), -1, *tiler.tile_shape)
        finished = []
        for (index, t, _), pred in zip(pending, out):
            if index not in outputs:
                outputs[index] = np.empty((pred.shape[0], *tiler.shape), np.float32)
            outputs[index][(slice(None), *tiler.keep[t])] = pred[(slice(None), *tiler.crop[t])]
            remaining[index] -= 1
            if remaining[index] == 0:
                result = outputs.pop(index)
                finished.append((index, result[0] if result.shape[0] == 1 else result))
                del remaining[index]
        pending.clear()
        return finished

    for index, image in enumerate(images):
        if image.ndim != 3:
            raise InputError(f"tiled prediction needs (channels, H, W) images, got shape {image.shape}")
        if tiler is None:
            tiler = Tiler(image.shape[1], image.shape[2], tile, overlap, margin=margin, multiple=multiple)
        elif image.shape[1:] != tiler.shape:
            raise InputError(f"all images must share one size: {image.shape[1:]} differs from {tiler.shape}")
        padded = _pad(np.asarray(image, dtype=np.float32), tiler.multiple)
        remaining[index] = tiler.n_tiles
        for t, win in enumerate(tiler.windows):
            pending.append((index, t, np.ascontiguousarray(padded[(slice(None), *win)])))
            if len(pending) == batch:
                yield flush()
    if pending:
        yield flush()
