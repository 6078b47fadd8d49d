"""Segment images and volumes with a U-Net: train from labels (dense or painted), predict seamlessly.

Training (:func:`train_unet`) samples class-balanced patches of the labelled images and runs the
shared Trainer (see :mod:`napari_tomoml.training.segmentation`); the result is a
:class:`~napari_tomoml.models.store.LoadedModel` whose card holds the classes, the input
normalisation and the validation Dice. Prediction (:func:`segment`) normalises the input as the
card says (the volume's 0.5/99.5 percentiles by default, one mapping for the whole volume), runs
the network slice by slice through the seamless tiler and returns labels in the user's class
values (or per-class probabilities).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..device import resolve_device
from ..errors import InputError, ModelFileError, OutputExistsError
from ..inference.inputs import check_finite, check_slices
from ..inference.runner import calibration_tiles, make_predictor
from ..inference.tiler import Tiler, auto_tile, default_batch, predict_tiled_steps
from ..models.normalization import fit_normalization
from ..models.store import LoadedModel, load_model
from ..models.unet import UNet
from ..progress import Progress, ProgressArg, run_to_end

DEFAULT_MODEL = "unet-synthetic"
DEFAULT_STEPS = 300
# card fields the store writes itself for every save
_OWN_CARD_FIELDS = ("format", "format_version", "architecture", "config", "version", "created", "weights_sha256")


# ---------------------------------------------------------------------------- training
def train_unet_steps(
    images: Any,
    labels: Any,
    *,
    classes: int | Sequence[int] | None = None,
    sparse: bool = False,
    patch: int = 128,
    steps: int | None = None,
    loss: str = "ce+dice",
    device: str = "auto",
    patch_range: Sequence[int] | None = None,
    val_fraction: float = 0.1,
    class_names: Sequence[str] | None = None,
    stop: Any = None,
    **options: Any,
) -> Generator[Progress, None, LoadedModel]:
    """:func:`train_unet` as a generator of :class:`Progress` (for widgets); returns the model."""
    from ..training.segmentation import LabelledSlices, prior_correction_steps
    from ..training.segmentation import train_unet_steps as _train

    yield Progress(0, 1, "preparing patches")
    seed = int(options.get("seed", 0))
    data = LabelledSlices(images, labels, classes=classes, sparse=sparse, patch=patch, patch_range=patch_range,
                          val_fraction=val_fraction, seed=seed)
    if class_names is not None:
        if len(class_names) != data.n_classes:
            raise InputError(f"{len(class_names)} class names for {data.n_classes} classes {data.values}")
        data.class_names = [str(n) for n in class_names]
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    start = time.perf_counter()
    net, result = yield from _train(data, steps=steps, loss=loss, device=device, stop=stop, **options)
    prior = yield from prior_correction_steps(net, data, device=device, seed=seed)
    best = min(result.history, key=lambda r: r["val_loss"]) if result.history else {}
    import torch

    card = {
        "classes": {"values": data.values, "names": data.class_names, "sparse": data.sparse,
                    "prior": prior},
        "normalization": data.normalization,
        "training": {
            **data.description(),
            "steps": result.step,
            "best_step": result.best_step,
            "stopped": "by user" if result.cancelled else ("early" if result.stopped_early else False),
            "loss": loss,
            "options": {k: v for k, v in options.items() if isinstance(v, (int, float, str, bool))},
            "seed": seed,
            "wall_time_s": round(time.perf_counter() - start, 1),
            "hardware": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "torch": torch.__version__,
        },
        "metrics": {"validation": {k: round(float(v), 4) for k, v in best.items()
                                   if k == "dice" or k.startswith("dice_")}},
        "description": f"U-Net segmenter, {data.n_classes} classes ({', '.join(data.class_names)})",
    }
    return LoadedModel(net.cpu(), card, source="trained in this session")


def train_unet(
    images: Any,
    labels: Any,
    *,
    classes: int | Sequence[int] | None = None,
    sparse: bool = False,
    patch: int = 128,
    steps: int | None = None,
    loss: str = "ce+dice",
    device: str = "auto",
    progress: ProgressArg = None,
    **options: Any,
) -> LoadedModel:
    """Train a U-Net segmenter on labelled images; returns a model for :func:`segment` / :func:`save_model`.

    ``images``/``labels``: one array or lists of arrays, 2-D images or 3-D volumes (a volume trains
    on its slices). Dense masks (``sparse=False``): every value is a class, 0 = background.
    Sparse annotations (``sparse=True``, as painted in a napari Labels layer): 0 = not annotated
    and ignored by the loss, classes 1..K, and predictions are 1..K. ``classes`` is the number of
    classes or the list of label values (default: from the labels).

    What the defaults do: ``steps=None`` trains 300 steps of 8 class-balanced 128x128 patches with
    flips, rotations and intensity jitter (a U-Net of depth 3, width 16; Adam, learning rate 2e-3
    cosine-decayed; loss cross-entropy + Dice), validating Dice every 25 steps on a held-out strip
    and keeping the best weights: about 4 minutes on one CPU thread, and Dice >= 0.9 on the
    generated test images from dense masks or from strokes on 4 % of the pixels
    (``benchmarks/bench_segment.py``). Class-balanced patches teach the network the class
    frequencies of the patches, not of the images; after training, the images' own frequencies
    are estimated (EM, :mod:`napari_tomoml.training.prior`) and folded into the output layer when
    that keeps the annotated pixels' classes (the card's ``classes.prior`` says what was done).
    ``loss`` is "ce", "wce", "bce",
    "dice" or a sum such as "ce+dice" (``beta=`` weights WCE/BCE). Other ``options``: ``batch``,
    ``depth``, ``width``, ``lr``, ``val_every``, ``val_fraction``, ``patience`` (early stopping),
    ``patch_range`` (train on these cells of the patch grid only), ``checkpoint_dir`` (resume),
    ``seed``, ``class_names``.

    >>> import napari_tomoml as tm
    >>> from napari_tomoml.sim.segmentation import segmentation_image
    >>> image, mask = segmentation_image((96, 96), "pores", seed=0)
    >>> model = tm.train_unet(image, mask, patch=64, steps=2, depth=2, width=4, device="cpu")
    >>> model.card["classes"]["values"]
    [0, 1]
    """
    return run_to_end(
        train_unet_steps(images, labels, classes=classes, sparse=sparse, patch=patch, steps=steps, loss=loss,
                         device=device, **options),
        progress,
    )


def save_model(model: LoadedModel | Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a model (from :func:`train_unet`, ``load_model``, or a bare network) as
    ``path.safetensors`` + ``path.json`` (its card: classes, normalisation, training, metrics).

    Refuses to replace existing files unless ``overwrite=True``; returns the weights path.

    >>> import napari_tomoml as tm
    >>> tm.save_model(model, "models/my-segmenter")          # doctest: +SKIP
    PosixPath('models/my-segmenter.safetensors')
    """
    from ..models.store import save_model as _save

    loaded = model if isinstance(model, LoadedModel) else LoadedModel(model)
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    existing = [p for p in (stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")) if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists; pass overwrite=True to replace it")
    fields = {k: v for k, v in loaded.card.items() if k not in _OWN_CARD_FIELDS}
    return _save(loaded.module, stem, overwrite=overwrite, **fields)


# ---------------------------------------------------------------------------- prediction
def _class_values(loaded: LoadedModel) -> list[int]:
    classes = loaded.card.get("classes") or {}
    n = loaded.module.classes
    values = [int(v) for v in classes.get("values", range(n))]
    if len(values) != n:
        raise ModelFileError(f"model card lists {len(values)} class values for a network with {n} outputs")
    return values


def segment_steps(
    volume: Any,
    model: str | Path | LoadedModel | Any = DEFAULT_MODEL,
    *,
    device: str = "auto",
    tile: int | None = None,
    batch: int | None = None,
    probabilities: bool = False,
    precision: str = "fp32",
) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """Segment slice by slice, yielding :class:`Progress` per tile batch; returns (result, metadata).

    The result is integer labels of the input's shape (uint8 when the class values allow), or
    with ``probabilities=True`` float32 (classes, ...) probabilities. ``tile`` is the largest tile
    side (default: from the free memory, at most 1024 px); tiles overlap by the network's receptive
    field and only their centres are kept, so any tile size gives the whole-image result.
    ``precision``: ``"fp32"``, ``"bf16"``, ``"int8"`` (ONNX Runtime, CPU) or ``"auto"`` (see
    :mod:`napari_tomoml.inference.precision`); a lower precision is calibrated and checked against
    fp32 (PSNR of the logits) on tiles of the middle slice, reported in ``metadata["precision"]``.

    >>> labels, meta = run_to_end(segment_steps(image, "unet-synthetic"))   # doctest: +SKIP
    """
    import torch

    vol = check_slices(volume, what="image", purpose="segment")
    dev = resolve_device(device)
    batch = batch or default_batch(dev)
    loaded = load_model(model, device=dev)
    if not isinstance(loaded.module, UNet):
        raise ModelFileError(f"{loaded.source} is a {loaded.card.get('architecture')} model, not a U-Net segmenter")
    values = _class_values(loaded)
    affine = fit_normalization(loaded.normalization, vol)
    nz = vol.shape[0]
    net = loaded.module

    def calibration() -> np.ndarray:
        middle = affine.apply(np.asarray(vol[nz // 2], dtype=np.float32))[None]
        return calibration_tiles([middle], multiple=net.size_multiple, per_image=4)

    predict_logits, precision_report = make_predictor(net, dev, precision, calibration)

    def predict(batch_in: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(predict_logits(batch_in)), dim=1).numpy()

    for name in ("receptive_field", "size_multiple", "bytes_per_pixel"):
        setattr(predict, name, getattr(predict_logits, name))
    if tile is None:
        tile = auto_tile(net.bytes_per_pixel, batch=batch, multiple=net.size_multiple)
    tiler = Tiler(*vol.shape[1:], tile=tile, margin=net.receptive_field, multiple=net.size_multiple)

    def slices():
        for z in range(nz):
            s = np.asarray(vol[z], dtype=np.float32)
            if not isinstance(vol, np.ndarray):
                check_finite(s, f"slice z={z}", "segment")
            yield affine.apply(s)[None]

    k = len(values)
    dtype = np.uint8 if max(values) < 256 else np.int32
    out = np.empty((k, *vol.shape), np.float32) if probabilities else np.empty(vol.shape, dtype)
    lut = np.asarray(values, dtype)
    total, done = nz * tiler.n_tiles, 0
    for finished in predict_tiled_steps(slices(), predict, tile=tile, batch=batch):
        for z, prob in finished:
            if probabilities:
                out[:, z] = prob
            else:
                out[z] = lut[prob.argmax(0)]
        done = min(done + batch, total)
        yield Progress(done, total, f"segmenting {nz} slice(s)")
    metadata = {
        "task": "segment",
        "model": loaded.source,
        "card": loaded.card,
        "classes": {"values": values, "names": (loaded.card.get("classes") or {}).get("names")},
        "normalization": {"offset": affine.offset, "scale": affine.scale},
        "parameters": {"device": str(dev), "tile": tiler.tile_shape[0], "margin": tiler.margin, "batch": batch,
                       "probabilities": probabilities, "precision": precision},
        "precision": precision_report,
    }
    if len(np.shape(volume)) == 2:
        out = out[:, 0] if probabilities else out[0]
    return out, metadata


def segment(
    image_or_volume: Any,
    model: str | Path | LoadedModel | Any = DEFAULT_MODEL,
    *,
    device: str = "auto",
    tile: int | None = None,
    progress: ProgressArg = None,
    probabilities: bool = False,
    **options: Any,
) -> np.ndarray:
    """Segment a 2-D image or a 3-D volume (slice by slice) with a U-Net; returns integer labels of
    the input's shape, or with ``probabilities=True`` float32 (classes, ...) probabilities.

    ``model`` is a model from :func:`train_unet`, a model file, or a bundled name
    (``"unet-synthetic"``, trained on generated pores/inclusions images). Tiles overlap by the
    network's receptive field and only their centres are kept, so the result equals a
    whole-image pass for any ``tile``; memory stays bounded by the tile size. ``options``:
    ``batch`` (tiles per forward pass), ``precision`` (``"fp32"`` by default, ``"bf16"``,
    ``"int8"`` or ``"auto"``: see :func:`segment_steps`).

    >>> import napari_tomoml as tm
    >>> from napari_tomoml.sim.segmentation import segmentation_image
    >>> image, mask = segmentation_image((256, 256), "mixed", seed=5)
    >>> labels = tm.segment(image, "unet-synthetic", device="cpu")
    >>> labels.shape, labels.dtype, float((labels == mask).mean()) > 0.95
    ((256, 256), dtype('uint8'), True)
    """
    out, _ = run_to_end(segment_steps(image_or_volume, model, device=device, tile=tile,
                                      probabilities=probabilities, **options), progress)
    return out
