"""Denoise reconstructed slices with a TomoGAN model (bundled, trained by you, or imported).

Each output slice z is predicted from the ``d`` slices centred on z (d = the model's depth). At
the top and bottom of the volume the missing neighbours are mirrored (slice -1 is slice 1, slice
nz is slice nz-2), which keeps the window's statistics natural; a volume too thin to mirror
repeats its edge slice. The model card's input normalisation (by default the volume's 0.5/99.5
percentiles mapped to the model's training range, one mapping for the whole volume) is applied
before and undone after, so the result is in the input's units.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ..device import resolve_device
from ..errors import InputError, ResultError
from ..inference.inputs import check_finite, check_slices
from ..inference.runner import calibration_tiles, make_predictor
from ..inference.tiler import Tiler, adjacent_indices, auto_tile, default_batch, predict_tiled_steps
from ..models.normalization import fit_normalization
from ..models.store import LoadedModel, load_model
from ..progress import Progress, ProgressArg, run_to_end


def denoise_steps(
    volume: np.ndarray,
    model: str | LoadedModel | Any = "tomogan-lowdose",
    *,
    device: str = "auto",
    tile: int | None = None,
    overlap: int = 32,
    batch: int | None = None,
    precision: str = "fp32",
    out: Any = None,
) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """Denoise slice by slice, yielding :class:`Progress` per tile batch; returns (denoised, metadata).

    ``model`` is a bundled name, a model-file path, or a loaded model. Slices are cut into
    ``tile``-pixel tiles (default: from the free memory, at most 1024 px) whose margins cover the
    network's receptive field, so tiles equal a whole-image pass; ``batch`` tiles run at once (default 1 on a CPU, 4 on a GPU). ``precision``: ``"fp32"``,
    ``"bf16"``, ``"int8"`` (ONNX Runtime, CPU) or ``"auto"`` (see
    :mod:`napari_tomoml.inference.precision`); a lower precision is calibrated and checked against
    fp32 on tiles of the middle slices, and ``metadata["precision"]`` reports its PSNR.
    Each finished slice goes to ``out``: an array-like of the volume's shape, or
    ``out(shape, metadata)`` opening one (e.g. :func:`napari_tomoml.io.writers.open_volume`, so
    a lazy volume larger than memory is denoised into a file in bounded memory); by default a
    new array. The result is ``out`` itself.

    >>> from napari_tomoml.progress import run_to_end
    >>> out, meta = run_to_end(denoise_steps(volume, "tomogan-lowdose"))   # doctest: +SKIP
    """
    vol = check_slices(volume, what="volume", purpose="denoise")
    dev = resolve_device(device)
    batch = batch or default_batch(dev)
    loaded = load_model(model, device=dev)
    depth = int(getattr(loaded.module, "depth", 1))
    affine = fit_normalization(loaded.normalization, vol)
    nz = vol.shape[0]

    lazy = not isinstance(vol, np.ndarray)
    cache: dict[int, np.ndarray] = {}  # the slices of the current window: each is read once

    def read(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = np.asarray(vol[i], dtype=np.float32)
            if lazy:
                check_finite(cache[i], f"slice z={i}", "denoise")
        return cache[i]

    def windows():
        for z in range(nz):
            idx = adjacent_indices(z, nz, depth)
            window = np.stack([read(int(i)) for i in idx])
            for old in [k for k in cache if k < idx.min()]:
                del cache[old]
            yield affine.apply(window)

    def calibration() -> np.ndarray:  # tiles of the middle slices' windows, as the network sees them
        middle = sorted({max(0, nz // 2 - 1), nz // 2})
        inputs = [affine.apply(np.stack([read(int(i)) for i in adjacent_indices(z, nz, depth)])) for z in middle]
        cache.clear()  # the run starts at the top
        return calibration_tiles(inputs, multiple=int(getattr(loaded.module, "size_multiple", 1)), per_image=4)

    predict, precision_report = make_predictor(loaded.module, dev, precision, calibration)
    margin, multiple = predict.receptive_field, predict.size_multiple
    tile_side = tile if tile is not None else auto_tile(predict.bytes_per_pixel, batch=batch, multiple=multiple)
    # the same tiler the prediction builds below, so the progress total is exact
    per_slice = Tiler(*vol.shape[1:], tile=tile_side, overlap=overlap, margin=margin, multiple=multiple).n_tiles
    total = nz * per_slice
    metadata = {
        "task": "denoise",
        "model": loaded.source,
        "card": loaded.card,
        "normalization": {"offset": affine.offset, "scale": affine.scale},
        "parameters": {"device": str(dev), "tile": tile_side, "overlap": overlap, "batch": batch,
                       "precision": precision},
        "precision": precision_report,
        "edge_slices": "mirrored",
    }
    if out is None:
        out = np.empty(vol.shape, np.float32)
    elif callable(out):
        out = out(tuple(vol.shape), metadata)
    if tuple(out.shape) != tuple(vol.shape):
        raise InputError(f"out has shape {tuple(out.shape)}; the volume is {tuple(vol.shape)}")
    done = nonfinite = 0
    steps = predict_tiled_steps(windows(), predict, tile=tile_side, overlap=overlap, batch=batch)
    for finished in steps:
        for z, image in finished:
            image = affine.undo(image)
            nonfinite += image.size - int(np.count_nonzero(np.isfinite(image)))
            out[z : z + 1] = image[None]
        done = min(done + batch, total)
        yield Progress(done, total, f"denoising {nz} slice(s)")
    if nonfinite == int(np.prod(vol.shape)):
        raise ResultError(f"the result is entirely NaN/inf: the model {loaded.source} is broken (weights overflow?)")
    return (out[0] if len(np.shape(volume)) == 2 and isinstance(out, np.ndarray) else out), metadata


def denoise(
    volume: np.ndarray,
    model: str | LoadedModel | Any = "tomogan-lowdose",
    *,
    device: str = "auto",
    progress: ProgressArg = None,
    **options: Any,
) -> np.ndarray:
    """Denoise a reconstructed volume (z, y, x) or one slice (y, x); returns float32 of the same shape.

    ``options`` go to :func:`denoise_steps` (``tile``, ``overlap``, ``batch``, ``precision``:
    ``"fp32"`` (default), ``"bf16"``, ``"int8"`` or ``"auto"``).

    >>> import napari_tomoml as tm
    >>> clean = tm.denoise(noisy_volume)                                  # doctest: +SKIP
    >>> clean = tm.denoise(noisy_slice, model="my-model.safetensors", progress=True)  # doctest: +SKIP
    >>> fast = tm.denoise(noisy_volume, precision="auto")   # int8 on a CPU where it keeps >= 45 dB  # doctest: +SKIP
    """
    out, _ = run_to_end(denoise_steps(volume, model, device=device, **options), progress)
    return out
