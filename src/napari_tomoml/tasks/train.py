"""Train TomoGAN and save the model file: the task the Train widget and ``tomoml train`` share.

It wires existing pieces together: :class:`~napari_tomoml.training.data.PairedVolumes` (pairs),
:func:`~napari_tomoml.training.tomogan.train_tomogan_steps` (training) and
:func:`~napari_tomoml.models.store.save_model` (model file + card).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import Progress

#: Smallest training crop: TomoGAN halves it three times.
MIN_CROP = 16


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

    from ..training.trainer import latest_checkpoint

    checkpoint = latest_checkpoint(checkpoint)
    if checkpoint is None:
        return None
    if (checkpoint / "best.safetensors").is_file():
        return load_file(str(checkpoint / "best.safetensors"))
    if (checkpoint / "weights.safetensors").is_file():
        latest = load_file(str(checkpoint / "weights.safetensors"))
        return {k[len("generator.") :]: v for k, v in latest.items() if k.startswith("generator.")}
    return None


def check_options(options: dict[str, Any]) -> None:
    """Refuse training settings that cannot work, before any data are read."""
    from ..errors import InputError

    for name in ("steps", "batch", "crop", "val_every"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            hint = " (there would be nothing to train)" if name == "steps" else ""
            raise InputError(f"{name} must be a whole number of at least 1, got {value!r}{hint}")
    crop = options.get("crop")
    if crop is not None and crop < MIN_CROP:
        raise InputError(f"crop {crop} is too small: TomoGAN needs crops of at least {MIN_CROP} pixels")


def _check_crop(train, crop: int) -> None:
    from ..errors import InputError

    smallest = min(min(v.shape[1:]) for v in train.noisy)
    if crop > smallest:
        raise InputError(f"crop {crop} is larger than the training slices ({smallest} pixels on their short side)")


def _fingerprint(source: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: every setting and the data."""
    import hashlib
    import json

    data = hashlib.sha256()
    if "hdf5" in source:
        stat = Path(source["hdf5"]).stat()
        data.update(f"{Path(source['hdf5']).resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        for key in ("noisy", "clean"):
            array = np.ascontiguousarray(source[key], dtype=np.float32)
            data.update(repr(array.shape).encode())
            data.update(array.tobytes())
        data.update(repr(source.get("val_fraction", 0.2)).encode())
    settings = {k: v for k, v in options.items() if k != "device"}
    return {"settings": json.loads(json.dumps(settings, default=str)), "data_sha256": data.hexdigest()}


def _prepare_checkpoint(checkpoint: Path, fingerprint: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """The one place that decides: continue the run in ``checkpoint``, start it afresh, or refuse."""
    import json

    from ..errors import InputError
    from ..io.writers import atomic_output
    from ..training.trainer import latest_checkpoint

    run_card = checkpoint / "run.json"
    found = latest_checkpoint(checkpoint) if checkpoint.is_dir() else None
    if found is not None and resume:
        try:
            previous = json.loads(run_card.read_text())
        except (OSError, ValueError):
            previous = None
        if previous != fingerprint:
            raise InputError(
                f"the checkpoint in {checkpoint} belongs to a run with other settings or data; "
                "rerun with the same ones, or drop --resume and pass --overwrite to start over"
            )
        return
    if found is not None and not overwrite:
        raise InputError(
            f"{checkpoint} holds an interrupted training run ({found.name}); pass --resume (resume=True) "
            "to continue it, or --overwrite to start over"
        )
    if checkpoint.exists():
        shutil.rmtree(checkpoint)
    checkpoint.mkdir(parents=True)
    with atomic_output(run_card, overwrite=True) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=1))


def default_checkpoint(save_path: str | Path) -> Path:
    """Where ``tomoml train`` keeps its checkpoint: ``<model>.checkpoint`` beside the model file.

    >>> default_checkpoint("models/mine.safetensors").as_posix()
    'models/mine.checkpoint'
    """
    path = Path(save_path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".checkpoint")


def train_and_save_steps(source: dict[str, Any], save_path: str, options: dict[str, Any],
                         stop: threading.Event | None = None, *, checkpoint_dir: str | Path | None = None,
                         resume: bool = False, overwrite: bool = True):
    """Build pairs, train TomoGAN, save the model file; returns ``(path, summary)``.

    ``stop`` ends training early (the best weights seen so far are saved). ``source`` is
    ``{"noisy": array, "clean": array, "val_fraction": f}`` or ``{"hdf5": path}``.

    With ``checkpoint_dir`` the run checkpoints there at every validation: after a crash or
    kill, the same call with ``resume=True`` continues where it stopped and ends with the
    weights an uninterrupted run would have (bitwise on CPU). A checkpoint of another run is
    refused; an interrupted one is replaced only with ``overwrite``. The checkpoint is removed
    once the model file is saved. ``checkpoint_dir`` defaults to :func:`default_checkpoint`.
    ``overwrite=False`` refuses an existing model file or card before training starts.
    """
    from ..errors import InputError
    from ..io.writers import check_output
    from ..models.store import _paths, save_model
    from ..models.tomogan import TomoGAN
    from ..training.data import PairedVolumes
    from ..training.tomogan import TomoGANLossConfig, train_tomogan_steps

    if not save_path:
        raise InputError("choose where to save the trained model first")
    check_options(options)
    for target in _paths(Path(save_path)):
        check_output(target, overwrite=overwrite)
    yield Progress(0, 1, "preparing training pairs")
    if "hdf5" in source:
        train = PairedVolumes.from_hdf5(source["hdf5"], "train")
        val = PairedVolumes.from_hdf5(source["hdf5"], "test")
    else:
        train, val = split_pairs(source["noisy"], source["clean"], source.get("val_fraction", 0.2))
    _check_crop(train, options.get("crop", 64))
    fingerprint = _fingerprint(source, options)
    options = dict(options)
    losses = TomoGANLossConfig(**options.pop("losses", {}))
    vgg_path = options.pop("vgg", None)
    vgg = None
    if vgg_path:
        from ..models.vgg import load_vgg19

        vgg = load_vgg19(vgg_path)
    checkpoint = Path(checkpoint_dir) if checkpoint_dir is not None else default_checkpoint(save_path)
    _prepare_checkpoint(checkpoint, fingerprint, resume, overwrite)
    result = None
    saved = False
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
            overwrite=overwrite,
        )
        saved = True
    finally:
        if saved:  # otherwise the checkpoint outlives the failure, so the run can be resumed
            shutil.rmtree(checkpoint, ignore_errors=True)
    yield Progress(1, 1, f"saved {Path(path).name}")
    return path, dict(best or {})
