"""Train TomoGAN and save the model file: the task the Train widget and ``tomoml train`` share.

It wires existing pieces together: :class:`~napari_tomoml.training.data.PairedVolumes` (pairs),
:func:`~napari_tomoml.training.tomogan.train_tomogan_steps` (training) and
:func:`~napari_tomoml.models.store.save_model` (model file + card).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import Progress


def split_pairs(noisy: Any, clean: Any, val_fraction: float):
    """Training and validation :class:`PairedVolumes` from two volumes, split along z."""
    from ..errors import InputError
    from ..training.data import PairedVolumes

    noisy = np.asarray(noisy, dtype=np.float32)
    clean = np.asarray(clean, dtype=np.float32)
    if noisy.shape != clean.shape:
        raise InputError(f"the noisy layer {noisy.shape} and the clean layer {clean.shape} differ in shape")
    if noisy.ndim == 2:
        noisy, clean = noisy[None], clean[None]
    nz = noisy.shape[0]
    if nz < 2 or val_fraction <= 0:  # too thin to hold slices out: validate on the training slices
        return (PairedVolumes.from_arrays(noisy, clean, description={"source": "napari layers"}),) * 2
    n_val = min(nz - 1, max(1, round(nz * val_fraction)))
    train = PairedVolumes.from_arrays(noisy[:-n_val], clean[:-n_val], description={"source": "napari layers"})
    val = PairedVolumes.from_arrays(noisy[-n_val:], clean[-n_val:], description={"source": "napari layers"})
    return train, val


def _best_weights(checkpoint: Path) -> dict | None:
    """The best (else the latest) generator weights in a Trainer checkpoint folder."""
    from safetensors.torch import load_file

    if (checkpoint / "best.safetensors").is_file():
        return load_file(str(checkpoint / "best.safetensors"))
    if (checkpoint / "weights.safetensors").is_file():
        latest = load_file(str(checkpoint / "weights.safetensors"))
        return {k[len("generator.") :]: v for k, v in latest.items() if k.startswith("generator.")}
    return None


def train_and_save_steps(source: dict[str, Any], save_path: str, options: dict[str, Any],
                         stop: threading.Event | None = None):
    """Build pairs, train TomoGAN, save the model file; returns ``(path, summary)``.

    ``stop`` ends training early (the best weights seen so far are saved). ``source`` is
    ``{"noisy": array, "clean": array, "val_fraction": f}`` or ``{"hdf5": path}``.
    """
    from ..errors import InputError
    from ..models.store import save_model
    from ..models.tomogan import TomoGAN
    from ..training.data import PairedVolumes
    from ..training.tomogan import TomoGANLossConfig, train_tomogan_steps

    if not save_path:
        raise InputError("choose where to save the trained model first")
    yield Progress(0, 1, "preparing training pairs")
    if "hdf5" in source:
        train = PairedVolumes.from_hdf5(source["hdf5"], "train")
        val = PairedVolumes.from_hdf5(source["hdf5"], "test")
    else:
        train, val = split_pairs(source["noisy"], source["clean"], source.get("val_fraction", 0.2))
    options = dict(options)
    losses = TomoGANLossConfig(**options.pop("losses", {}))
    vgg_path = options.pop("vgg", None)
    vgg = None
    if vgg_path:
        from ..models.vgg import load_vgg19

        vgg = load_vgg19(vgg_path)
    checkpoint = Path(tempfile.mkdtemp(prefix="tomoml-train-"))
    result = None
    last_validation: dict[str, float] = {}
    try:
        steps = train_tomogan_steps(train, val, losses=losses, vgg=vgg, checkpoint_dir=checkpoint, **options)
        try:
            while True:
                try:
                    progress = next(steps)
                except StopIteration as done:
                    net, result = done.value
                    break
                last_validation = progress.data.get("validation") or last_validation
                yield progress
                if stop is not None and stop.is_set():
                    steps.close()  # the Trainer checkpoints and keeps the best weights
                    net = None
                    break
        finally:
            steps.close()
        if net is None:
            state = _best_weights(checkpoint)
            if state is None:
                raise InputError("training was stopped before its first step; nothing to save")
            net = TomoGAN(depth=options.get("depth", 3), upsample=options.get("upsample", "bilinear"))
            net.load_state_dict(state)
        history = [] if result is None else result.history
        best = min(history, key=lambda r: r["val_loss"]) if history else last_validation
        path = save_model(
            net.cpu(),
            Path(save_path),
            normalization=train.normalization,
            training={
                **train.description,
                "validation": val.description,
                "steps": None if result is None else result.step,
                "stopped_by_user": result is None,
                "loss_weights": {"mse": losses.lambda_mse, "adv": losses.lambda_adv,
                                 "vgg": losses.lambda_vgg if vgg is not None else 0.0},
                "options": {k: v for k, v in options.items() if isinstance(v, (int, float, str))},
            },
            metrics={k: float(v) for k, v in (best or {}).items() if isinstance(v, (int, float))},
            description="TomoGAN trained with napari-tomoml",
        )
    finally:
        shutil.rmtree(checkpoint, ignore_errors=True)
    yield Progress(1, 1, f"saved {Path(path).name}")
    return path, dict(best or {})
