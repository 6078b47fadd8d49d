"""Patch training of the U-Net segmenter: labelled images -> patches -> the shared Trainer.

:class:`LabelledSlices` turns images (2-D, or 3-D volumes used slice by slice) and their labels
into normalised float32 slices and per-pixel class indices (``IGNORE`` where not annotated),
checking everything a person can get wrong. It samples class-balanced random patches: a class is
drawn uniformly among those with training pixels, then a pixel of that class, then a patch that
contains it, so a rare class (or a thin stroke in a sparse annotation) is seen as often as the
matrix. Patches get random flips, 90-degree rotations and a random gain/offset of the intensity.
``patch_range`` restricts training to cells of the patch grid, numbered from 0 left to right,
top to bottom (the superres-tomo generator's option).

Validation: a strip of rows at the bottom of every slice (``val_fraction``) is held out when
every class keeps annotated pixels on both sides of it; otherwise (or with ``patch_range``) the
model is validated on training pixels, and the card says so. Validation scores Dice per class
on the annotated pixels; the Trainer keeps the weights with the best mean Dice.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.normalization import DEFAULT_NORMALIZATION, fit_normalization
from ..models.unet import UNet
from ..progress import Progress
from .losses import IGNORE, segmentation_loss
from .prior import adjust_to_image_prior
from .trainer import Trainer, TrainResult

# at most this many pixel coordinates per class are kept for sampling (memory stays small)
_MAX_COORDS = 1 << 20
_MAX_VAL_SLICES = 4
# the class-prior estimate looks at up to this many annotated slices and pixels (a regular subsample)
_PRIOR_SLICES = 8
_PRIOR_PIXELS = 1 << 22
# ... and is folded into the network only if this share of the annotated pixels it got right stay right
PRIOR_KEEP = 0.99


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _as_slices(array: Any, name: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"{name} must be a 2-D image (y, x) or a 3-D volume (z, y, x), got shape {a.shape}")
    return a


def class_values(labels: list[np.ndarray], classes: int | Sequence[int] | None, sparse: bool) -> list[int]:
    """The label value of each network output channel, checked against the labels.

    >>> class_values([np.array([[0, 2], [1, 0]])], None, sparse=False)
    [0, 1, 2]
    >>> class_values([np.array([[0, 2], [1, 0]])], None, sparse=True)
    [1, 2]
    """
    present = sorted(set().union(*(np.unique(lab).tolist() for lab in labels)))
    if present and present[0] < 0:
        raise InputError(f"labels must be 0 or positive, found {present[0]}")
    annotated = [v for v in present if v != 0] if sparse else present
    if classes is None:
        top = max(annotated, default=0)
        values = list(range(1, top + 1)) if sparse else list(range(0, top + 1))
    elif isinstance(classes, (int, np.integer)):
        values = list(range(1, int(classes) + 1)) if sparse else list(range(int(classes)))
    else:
        values = [int(v) for v in classes]
        if len(set(values)) != len(values):
            raise InputError(f"classes {values} repeat a value")
        if sparse and 0 in values:
            raise InputError("with sparse=True, 0 means 'not annotated' and cannot be a class")
    if not annotated:
        raise InputError("the labels have no annotated pixel: paint some pixels of each class (values 1, 2, ...) first"
                         if sparse else "the labels are empty")
    outside = [v for v in annotated if v not in values]
    if outside:
        raise InputError(f"label value(s) {outside[:5]} are outside the classes {values}"
                         + (" (0 is 'not annotated' in sparse mode)" if sparse else ""))
    if len(values) < 2:
        raise InputError(f"segmentation needs at least two classes; the labels hold only {values}"
                         + (": paint a second class (e.g. the background as 1, objects as 2)" if sparse else ""))
    if len([v for v in annotated if v in values]) < 2:
        raise InputError(f"only class {annotated[0]} is annotated: annotate at least two classes")
    return values


class LabelledSlices:
    """Normalised training slices with per-pixel class indices, a sampler and validation pairs.

    >>> rng = np.random.default_rng(0)
    >>> image, labels = rng.random((64, 64)), (rng.random((64, 64)) > 0.5).astype(np.uint8)
    >>> data = LabelledSlices(image, labels, patch=32)
    >>> x, y = data.sample_batch(rng, batch=2)
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((2, 1, 32, 32), dtype('float32'), (2, 32, 32), dtype('int64'))
    """

    def __init__(
        self,
        images: Any,
        labels: Any,
        *,
        classes: int | Sequence[int] | None = None,
        sparse: bool = False,
        patch: int = 128,
        patch_range: Sequence[int] | None = None,
        val_fraction: float = 0.1,
        normalization: dict | None = None,
        seed: int = 0,
    ):
        image_list, label_list = _as_list(images), _as_list(labels)
        if len(image_list) != len(label_list):
            raise InputError(f"{len(image_list)} image(s) but {len(label_list)} label array(s)")
        if not image_list:
            raise InputError("no training images given")
        self.patch = int(patch)
        self.sparse = bool(sparse)
        self.normalization = dict(normalization or DEFAULT_NORMALIZATION)
        imgs, labs = [], []
        for i, (img, lab) in enumerate(zip(image_list, label_list)):
            img, lab = _as_slices(img, f"image {i}"), _as_slices(lab, f"labels {i}")
            if img.shape != lab.shape:
                raise InputError(f"image {i} has shape {img.shape[-img.ndim:]} but its labels {lab.shape}: they must match")
            if img.dtype.kind not in "uif":
                raise InputError(f"image {i} must hold numbers, got dtype {img.dtype}")
            if lab.dtype.kind == "f":
                if not np.isfinite(lab).all() or not np.all(lab == np.round(lab)):
                    raise InputError(f"labels {i} must be whole numbers (a napari Labels layer), got fractions or NaN")
            elif lab.dtype.kind not in "uib":
                raise InputError(f"labels {i} must be integers, got dtype {lab.dtype}")
            if img.dtype.kind == "f" and not np.isfinite(img).all():
                raise InputError(f"image {i} contains NaN or infinite values; replace them (e.g. np.nan_to_num) first")
            if min(img.shape[1:]) < self.patch:
                raise InputError(f"patch {self.patch} px is larger than image {i} ({img.shape[1]} x {img.shape[2]}): "
                                 f"use patch <= {min(img.shape[1:])}")
            imgs.append(img)
            labs.append(lab.astype(np.int64))
        self.values = class_values(labs, classes, self.sparse)
        self.class_names = [("background" if v == 0 else f"class {v}") for v in self.values]
        lookup = {v: c for c, v in enumerate(self.values)}
        self.slices: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        for img, lab in zip(imgs, labs):
            affine = fit_normalization(self.normalization, img)
            target = np.full(lab.shape, IGNORE, np.int64)
            for v, c in lookup.items():
                target[lab == v] = c
            for z in range(img.shape[0]):
                self.slices.append(np.asarray(affine.apply(img[z].astype(np.float32)), np.float32))
                self.targets.append(target[z])
        self.patch_range = None if patch_range is None or len(patch_range) == 0 else [int(p) for p in patch_range]
        self._split(val_fraction)
        self._index_pixels(np.random.default_rng([seed, 7]))

    # ---- setup ---------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.values)

    def _split(self, val_fraction: float) -> None:
        """Hold out a bottom strip of rows for validation where every class keeps pixels on both sides."""
        self.train_rows = [t.shape[0] for t in self.targets]
        self.validation_kind = "training pixels (too few annotations to hold a strip out)"
        if self.patch_range is not None:
            self.validation_kind = "training pixels (patch_range restricts training to chosen patches)"
            return
        if val_fraction <= 0:
            self.validation_kind = "training pixels (val_fraction=0)"
            return
        rows = [min(t.shape[0] - self.patch, max(8, int(round(val_fraction * t.shape[0])))) for t in self.targets]
        if min(rows) < 8:
            return
        cut = [t.shape[0] - r for t, r in zip(self.targets, rows)]
        for c in range(self.n_classes):
            in_train = any(np.any(t[:k] == c) for t, k in zip(self.targets, cut))
            in_val = any(np.any(t[k:] == c) for t, k in zip(self.targets, cut))
            if in_train != in_val:  # a class would be missing from one side
                return
        self.train_rows = cut
        self.validation_kind = f"held-out strip: bottom {val_fraction:.0%} of the rows of every slice"

    def _cells(self, h: int, w: int) -> np.ndarray:
        """Top-left corners of the allowed ``patch_range`` cells of an ``h`` x ``w`` slice."""
        ncols, nrows = w // self.patch, h // self.patch
        bad = [p for p in self.patch_range if not 0 <= p < nrows * ncols]
        if bad:
            raise InputError(f"patch_range {bad[:5]}: a {h} x {w} slice has patches 0..{nrows * ncols - 1} "
                             f"of {self.patch} px ({nrows} rows x {ncols} columns)")
        return np.array([(p // ncols * self.patch, p % ncols * self.patch) for p in self.patch_range])

    def _index_pixels(self, rng: np.random.Generator) -> None:
        """Per class, (slice, y, x) of training pixels to centre patches on (subsampled when huge)."""
        per_slice = max(1, _MAX_COORDS // len(self.slices))
        coords: list[list[np.ndarray]] = [[] for _ in range(self.n_classes)]
        for s, (target, rows) in enumerate(zip(self.targets, self.train_rows)):
            allowed = np.zeros(target.shape, bool)
            if self.patch_range is None:
                allowed[:rows] = True
            else:
                for y0, x0 in self._cells(*target.shape):
                    allowed[y0 : y0 + self.patch, x0 : x0 + self.patch] = True
            for c in range(self.n_classes):
                flat = np.flatnonzero((target == c) & allowed)
                if len(flat) > per_slice:
                    flat = rng.choice(flat, per_slice, replace=False)
                ys, xs = np.divmod(flat, target.shape[1])
                coords[c].append(np.stack([np.full_like(ys, s), ys, xs], 1))
        self.coords = [np.concatenate(c) for c in coords]
        self.sampled_classes = [c for c in range(self.n_classes) if len(self.coords[c])]
        if len(self.sampled_classes) < 1:
            raise InputError("no annotated pixel lies in the training region (check patch_range)")

    # ---- sampling ------------------------------------------------------------------------------
    def _origin(self, rng: np.random.Generator, s: int, y: int, x: int) -> tuple[int, int]:
        h, w = self.targets[s].shape
        p = self.patch
        if self.patch_range is not None:
            return y // p * p, x // p * p
        y0 = int(np.clip(y - rng.integers(p), 0, self.train_rows[s] - p))
        x0 = int(np.clip(x - rng.integers(p), 0, w - p))
        return y0, x0

    def sample_batch(self, rng: np.random.Generator, batch: int = 8, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """A class-balanced batch: images (batch, 1, patch, patch) float32, targets (batch, patch, patch) int64."""
        p = self.patch
        xs, ys = [], []
        for _ in range(batch):
            c = self.sampled_classes[int(rng.integers(len(self.sampled_classes)))]
            s, y, x = self.coords[c][int(rng.integers(len(self.coords[c])))]
            y0, x0 = self._origin(rng, int(s), int(y), int(x))
            img = self.slices[s][y0 : y0 + p, x0 : x0 + p]
            tgt = self.targets[s][y0 : y0 + p, x0 : x0 + p]
            if augment:
                k = int(rng.integers(4))
                img, tgt = np.rot90(img, k), np.rot90(tgt, k)
                if rng.integers(2):
                    img, tgt = img[:, ::-1], tgt[:, ::-1]
                img = img * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)
            xs.append(img[None])
            ys.append(tgt)
        return np.ascontiguousarray(np.stack(xs), np.float32), np.ascontiguousarray(np.stack(ys))

    def sampling_prior(self, batches: int = 100, batch: int = 8, seed: int = 0) -> list[float]:
        """Class frequencies among the annotated pixels of sampled patches: the prior the trained
        network's posteriors are calibrated to (balanced sampling raises rare classes), which
        :mod:`napari_tomoml.inference.prior` replaces by each image's own."""
        rng = np.random.default_rng([seed, 11])
        counts = np.zeros(self.n_classes)
        for _ in range(batches):
            _, y = self.sample_batch(rng, batch, augment=False)
            counts += np.bincount(y[y != IGNORE], minlength=self.n_classes)[: self.n_classes]
        counts = np.maximum(counts, 1.0)  # a class never sampled still gets a small prior
        return [round(float(c), 6) for c in counts / counts.sum()]

    def validation_pairs(self, max_side: int = 512) -> list[tuple[np.ndarray, np.ndarray]]:
        """Fixed (image (1, 1, h, w), target (1, h, w)) pairs: the held-out strips (or centre crops
        of up to ``max_side`` px of the training slices), of up to four slices with annotations."""
        held_out = self.validation_kind.startswith("held-out")
        chosen = [s for s, t in enumerate(self.targets) if np.any(t[self.train_rows[s]:] != IGNORE)] if held_out \
            else [s for s, t in enumerate(self.targets) if np.any(t != IGNORE)]
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, min(_MAX_VAL_SLICES, len(chosen))).round().astype(int)]
        pairs = []
        for s in chosen:
            img, tgt = self.slices[s], self.targets[s]
            if held_out:
                ys, xs = slice(self.train_rows[s], None), slice(None)
            else:
                h, w = tgt.shape
                ch, cw = min(h, max_side), min(w, max_side)
                ys, xs = slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw)
            pairs.append((img[None, None, ys, xs].copy(), tgt[None, ys, xs].copy()))
        return pairs

    def description(self) -> dict[str, Any]:
        """What the model was trained on, for its card."""
        annotated = sum(int(np.sum(t != IGNORE)) for t in self.targets)
        total = sum(t.size for t in self.targets)
        return {
            "slices": len(self.slices),
            "slice_shapes": sorted({list(t.shape).__repr__() for t in self.targets}),
            "sparse": self.sparse,
            "annotated_fraction": round(annotated / total, 5),
            "pixels_per_class": {name: int(sum(np.sum(t == c) for t in self.targets))
                                 for c, name in enumerate(self.class_names)},
            "patch": self.patch,
            "patch_range": self.patch_range,
            "validation": self.validation_kind,
        }


def dice_scores(prediction: np.ndarray, target: np.ndarray, n_classes: int) -> list[float]:
    """Dice of each class between predicted and true class indices over annotated pixels
    (``target != IGNORE``); a class absent from both counts as 1.

    >>> dice_scores(np.array([0, 1, 1, 0]), np.array([0, 1, 0, -1]), 2)
    [0.6666666666666666, 0.6666666666666666]
    """
    valid = target != IGNORE
    p, t = prediction[valid], target[valid]
    out = []
    for c in range(n_classes):
        a, b = p == c, t == c
        denom = a.sum() + b.sum()
        out.append(1.0 if denom == 0 else float(2 * np.sum(a & b) / denom))
    return out


class SegmentationTask:
    """The U-Net :class:`~napari_tomoml.training.trainer.TrainingTask`: one loss, Adam, Dice validation.

    >>> task = SegmentationTask(UNet(classes=2, depth=2, width=4), loss="ce+dice")
    >>> task.validation_scores(np.ones((1, 2, 4, 4)) / 2, np.zeros((1, 4, 4), int))["val_loss"] >= 0
    True
    """

    monitored = "unet"

    def __init__(self, net: UNet, *, loss: str = "ce+dice", beta: float | None = None, lr: float = 2e-3,
                 class_names: list[str] | None = None):
        self.net = net
        self.loss = segmentation_loss(loss, beta)
        self.modules = {"unet": net}
        self.optimizers = {"unet": torch.optim.Adam(net.parameters(), lr=lr)}
        self.class_names = class_names or [f"class {c}" for c in range(net.classes)]

    def train_step(self, next_batch: Callable, generator: torch.Generator, step: int) -> dict[str, float]:
        x, y = next_batch()
        loss = self.loss(self.net(x), y)
        opt = self.optimizers["unet"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)

    def validation_scores(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        dice = dice_scores(prediction.argmax(1), target, prediction.shape[1])
        scores = {"val_loss": 1.0 - float(np.mean(dice)), "dice": float(np.mean(dice))}
        scores.update({f"dice_{name}": d for name, d in zip(self.class_names, dice)})
        return scores


def train_unet_steps(
    data: LabelledSlices,
    *,
    steps: int = 300,
    batch: int = 8,
    depth: int = 3,
    width: int = 16,
    loss: str = "ce+dice",
    beta: float | None = None,
    lr: float = 2e-3,
    val_every: int = 25,
    patience: int | None = None,
    checkpoint_dir: Any = None,
    seed: int = 0,
    device: str = "auto",
    stop: Any = None,
) -> Generator[Progress, None, tuple[UNet, TrainResult]]:
    """Train a U-Net on ``data``'s patches; yields Progress (with losses and Dice), returns
    (best network, result). ``stop`` (a ``threading.Event``) ends training at the next step and
    keeps the best weights.

    >>> net, result = run_to_end(train_unet_steps(data, steps=300))   # doctest: +SKIP
    """
    torch.manual_seed(seed)
    net = UNet(in_channels=1, classes=data.n_classes, depth=depth, width=width)
    task = SegmentationTask(net, loss=loss, beta=beta, lr=lr, class_names=data.class_names)
    trainer = Trainer(
        task,
        lambda rng: data.sample_batch(rng, batch),
        data.validation_pairs(),
        val_every=val_every,
        patience=patience,
        checkpoint_dir=checkpoint_dir,
        seed=seed,
        device=device,
        lr_schedule="cosine",
    )
    run = trainer.steps(steps)
    try:
        while True:
            try:
                progress = next(run)
            except StopIteration as done:
                result = done.value
                break
            if stop is not None and stop.is_set():
                trainer.request_stop()
            yield progress
    finally:
        run.close()
    return net.eval(), result


def prior_correction_steps(
    net: UNet, data: LabelledSlices, *, device: str = "auto", seed: int = 0
) -> Generator[Progress, None, dict[str, Any]]:
    """Fold the training images' class frequencies into a trained network's output layer.

    The network's posteriors are calibrated to the class frequencies of its class-balanced
    patches (:meth:`LabelledSlices.sampling_prior`). EM (:mod:`.prior`) estimates the images'
    own frequencies from its posteriors over whole annotated slices; ``log(images / patches)``
    is then added to the output bias, which multiplies every posterior by that ratio. A badly
    calibrated network can make EM drop a class, so the change is kept only if at least
    ``PRIOR_KEEP`` of the annotated pixels the network classified right stay right. Returns what
    was done, for the model card.
    """
    from ..device import resolve_device
    from ..inference.runner import torch_predictor
    from ..inference.tiler import predict_tiled_steps

    patches = np.asarray(data.sampling_prior(seed=seed))
    annotated = [s for s, t in enumerate(data.targets) if np.any(t != IGNORE)]
    chosen = sorted(annotated, key=lambda s: -int(np.sum(data.targets[s] != IGNORE)))[:_PRIOR_SLICES]
    predict = torch_predictor(net, resolve_device(device))
    total = sum(data.targets[s].size for s in chosen)
    step = max(1, -(-total // _PRIOR_PIXELS))
    probs, targets = [], []
    for i, s in enumerate(chosen):
        for finished in predict_tiled_steps([data.slices[s][None]], predict, tile=None, batch=1):
            for _, logits in finished:
                prob = torch.softmax(torch.from_numpy(logits.reshape(len(logits), -1)[:, ::step]), dim=0).numpy()
                probs.append(prob)
                targets.append(data.targets[s].ravel()[::step])
        yield Progress(i + 1, len(chosen), "estimating the images' class frequencies")
    prob, target = np.concatenate(probs, 1), np.concatenate(targets)
    adjusted, images = adjust_to_image_prior(prob, patches)
    images = np.maximum(images, 1e-6)
    labelled = target != IGNORE
    right = prob.argmax(0)[labelled] == target[labelled]
    still = adjusted.argmax(0)[labelled] == target[labelled]
    kept = float(still[right].mean()) if right.any() else 0.0
    folded = kept >= PRIOR_KEEP
    if folded:
        with torch.no_grad():
            net.head.bias += torch.as_tensor(np.log(images / patches), dtype=net.head.bias.dtype,
                                             device=net.head.bias.device)
    return {"patches": [round(float(v), 5) for v in patches], "images": [round(float(v), 5) for v in images],
            "annotated_kept": round(kept, 4), "folded": folded}
