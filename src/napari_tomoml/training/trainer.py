"""One Trainer for every model: steps or epochs, validation, early stopping, checkpoints, cancel.

A model plugs in as a :class:`TrainingTask` (its networks, optimisers, one training step and a
prediction for validation); the Trainer owns everything else::

    task = TomoGANTask(TomoGAN(depth=3))
    trainer = Trainer(task, sample=lambda rng: pairs.sample_batch(rng, 8, 64, 3),
                      validation=pairs_val.validation_pairs(3), checkpoint_dir="ckpt")
    result = run_to_end(trainer.steps(2000), progress=True)

Reproducible: step ``k`` draws its batch from ``numpy.random.default_rng([seed, k])`` and its
torch randomness from a generator seeded the same way, so a run resumed from a checkpoint sees
exactly the batches an uninterrupted run would have: on CPU a resumed run ends bitwise equal to
an uninterrupted one. A checkpoint is one folder ``step-NNNNNNNNN`` inside ``checkpoint_dir``
(weights as safetensors, optimiser state + progress via ``torch.save``, read back with
``weights_only=True``), written under a temporary name and renamed into place, so a kill at any
moment leaves the previous complete checkpoint; the newest complete one is resumed.

Cancel: stop iterating (napari's worker.quit(), ``generator.close()``) or call
:meth:`Trainer.request_stop`; either way the run ends at a yield, the checkpoint is written and
the best weights seen in validation are put back into the monitored network.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..errors import InputError
from ..progress import Progress
from .metrics import psnr, ssim

Batch = tuple[np.ndarray, np.ndarray]


class TrainingTask(Protocol):
    """What a model provides to the :class:`Trainer`."""

    modules: dict[str, nn.Module]  # every network to checkpoint, by name
    optimizers: dict[str, torch.optim.Optimizer]
    monitored: str  # the module whose best validation weights are kept (e.g. "generator")

    def train_step(
        self, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator, step: int
    ) -> dict[str, float]:
        """Optimisation step number ``step``; ``next_batch()`` gives a fresh (input, target) batch on the device."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The monitored network's output for validation."""

    # Optional: ``validation_scores(prediction, target) -> dict`` (NumPy arrays) replaces the
    # default MSE/PSNR/SSIM; it must hold "val_loss" (lower is better), e.g. 1 - Dice.


@dataclass
class TrainResult:
    """How a run ended; ``history`` holds one dict per validation."""

    step: int
    best_step: int
    best: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    cancelled: bool = False
    wall_time_s: float = 0.0


class Trainer:
    """Drive a :class:`TrainingTask`: sample, step, validate, keep the best, checkpoint, resume.

    ``sample(rng)`` returns a NumPy (input, target) batch; ``validation`` is a fixed list of
    (input, target) pairs scored every ``val_every`` steps (MSE as ``val_loss``, PSNR, SSIM).
    Early stopping after ``patience`` validations without a better ``val_loss``. With
    ``checkpoint_dir`` a checkpoint is written at each validation and at the end, and an
    existing one is resumed (``resume=True``). ``lr_schedule="cosine"`` decays every optimiser's
    learning rate from its initial value to 5 % of it over the run's ``total_steps``.

    >>> trainer = Trainer(task, sample, validation, val_every=50)   # doctest: +SKIP
    >>> result = run_to_end(trainer.steps(1000))                    # doctest: +SKIP
    """

    def __init__(
        self,
        task: TrainingTask,
        sample: Callable[[np.random.Generator], Batch],
        validation: list[Batch],
        *,
        val_every: int = 100,
        patience: int | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = True,
        seed: int = 0,
        device: str = "auto",
        steps_per_epoch: int | None = None,
        lr_schedule: str | None = None,
    ):
        self.task = task
        self.sample = sample
        self.validation = validation
        self.val_every = max(1, int(val_every))
        self.patience = patience
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.steps_per_epoch = steps_per_epoch
        if lr_schedule not in (None, "cosine"):
            raise InputError(f"lr_schedule must be None or 'cosine', got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        # initial learning rates, read before a resume overwrites them with decayed ones
        self._base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in task.optimizers.items()}
        self.step = 0
        self.best = math.inf
        self.best_step = 0
        self.bad_validations = 0
        self.history: list[dict[str, float]] = []
        self.elapsed = 0.0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._stop_requested = False
        self._saved_step: int | None = None
        for module in task.modules.values():
            module.to(self.device)
        if resume and self.checkpoint_dir is not None and latest_checkpoint(self.checkpoint_dir) is not None:
            self.load_checkpoint()

    # ---- public controls -------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask a running :meth:`steps` to stop at its next yield (keeps the best weights)."""
        self._stop_requested = True

    def epochs(self, n_epochs: int) -> Generator[Progress, None, TrainResult]:
        """Train for ``n_epochs`` epochs of ``steps_per_epoch`` steps (see :meth:`steps`)."""
        if not self.steps_per_epoch:
            raise InputError("epochs() needs steps_per_epoch (e.g. training slices // batch size)")
        return self.steps(n_epochs * self.steps_per_epoch)

    def steps(self, total_steps: int) -> Generator[Progress, None, TrainResult]:
        """Train until step ``total_steps`` (counting steps done before a resume), yielding Progress.

        Each Progress carries ``data={"step", "losses", "validation" (when one ran), "best"}``
        so a widget can plot live curves.
        """
        stopped_early = cancelled = False
        start = time.perf_counter()
        try:
            while self.step < total_steps and not self._stop_requested:
                self._set_learning_rate(total_steps)
                losses = self._train_one_step()
                data: dict[str, Any] = {"step": self.step, "losses": losses, "best": self.best}
                if self.step % self.val_every == 0 or self.step == total_steps:
                    self.elapsed += time.perf_counter() - start
                    start = time.perf_counter()
                    data["validation"] = self._validate(losses)
                    data["best"] = self.best
                    if self.checkpoint_dir is not None:
                        self.save_checkpoint()
                    if self.patience is not None and self.bad_validations >= self.patience:
                        stopped_early = True
                yield Progress(self.step, total_steps, f"training step {self.step}/{total_steps}", data)
                if stopped_early:
                    break
            cancelled = self._stop_requested
        except GeneratorExit:
            cancelled = True
            raise
        finally:
            self.elapsed += time.perf_counter() - start
            if self.checkpoint_dir is not None and self._saved_step != self.step:
                self.save_checkpoint()
            self.restore_best()
        return TrainResult(
            self.step, self.best_step, self.best, list(self.history), stopped_early, cancelled, self.elapsed
        )

    def restore_best(self) -> None:
        """Put the best validated weights back into the monitored network."""
        if self._best_state is not None:
            self.task.modules[self.task.monitored].load_state_dict(self._best_state)

    # ---- internals -------------------------------------------------------------------------
    def _set_learning_rate(self, total_steps: int) -> None:
        if self.lr_schedule != "cosine":
            return
        factor = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * self.step / max(total_steps, 1)))
        for name, opt in self.task.optimizers.items():
            for group, base in zip(opt.param_groups, self._base_lrs[name]):
                group["lr"] = base * factor

    def _train_one_step(self) -> dict[str, float]:
        # randomness of step k depends only on (seed, k): resumed runs repeat it exactly
        rng = np.random.default_rng([self.seed, self.step])
        torch_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))

        def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
            x, y = self.sample(rng)
            return torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)

        for module in self.task.modules.values():
            module.train()
        losses = self.task.train_step(next_batch, torch_gen, self.step)
        self.step += 1
        return losses

    def _validate(self, losses: dict[str, float]) -> dict[str, float]:
        net = self.task.modules[self.task.monitored]
        net.eval()
        mse, psnrs, ssims = [], [], []
        scores = getattr(self.task, "validation_scores", None)
        rows = []
        with torch.no_grad():
            for x, y in self.validation:
                pred = self.task.predict(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
                if scores is not None:
                    rows.append(scores(pred, y))
                    continue
                mse.append(float(np.mean((pred - y) ** 2)))
                psnrs.append(psnr(pred, y))
                ssims.append(ssim(pred[0, 0], y[0, 0]))
        if scores is not None:
            metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        else:
            metrics = {"val_loss": float(np.mean(mse)), "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}
        record = {"step": self.step, **metrics, **{f"train_{k}": v for k, v in losses.items()}}
        self.history.append(record)
        if record["val_loss"] < self.best:
            self.best, self.best_step, self.bad_validations = record["val_loss"], self.step, 0
            self._best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.bad_validations += 1
        return record

    def save_checkpoint(self) -> None:
        """Write weights, best weights, optimiser state and progress as one folder in ``checkpoint_dir``.

        The folder is complete before it is renamed into place; older checkpoints are then removed.
        """
        from safetensors.torch import save_file

        from ..io.writers import atomic_output, clean_leftovers

        directory = self.checkpoint_dir
        weights = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in self.task.modules.items()
                   for k, v in m.state_dict().items()}
        state = {
            "step": self.step, "best": self.best, "best_step": self.best_step,
            "bad_validations": self.bad_validations, "history": self.history, "seed": self.seed,
            "elapsed": self.elapsed,
            "optimizers": {name: opt.state_dict() for name, opt in self.task.optimizers.items()},
        }
        target = directory / f"{CHECKPOINT_PREFIX}{self.step:09d}"
        with atomic_output(target, overwrite=True) as tmp:
            tmp.mkdir()
            save_file(weights, str(tmp / "weights.safetensors"))
            if self._best_state is not None:
                best = {k: v.cpu().contiguous() for k, v in self._best_state.items()}
                save_file(best, str(tmp / "best.safetensors"))
            torch.save(state, tmp / "state.pt")
        for left in directory.glob(f".{CHECKPOINT_PREFIX}*"):  # saves of killed runs
            clean_leftovers(directory / left.name[1:].split(".", 1)[0])
        for old in directory.glob(f"{CHECKPOINT_PREFIX}*"):
            if old != target and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        self._saved_step = self.step

    def load_checkpoint(self) -> None:
        """Resume from the newest complete checkpoint: weights, best weights, optimisers, step, history."""
        from safetensors.torch import load_file

        directory = latest_checkpoint(self.checkpoint_dir)
        if directory is None:
            raise InputError(f"{self.checkpoint_dir} holds no complete checkpoint to resume")
        try:
            state = torch.load(directory / "state.pt", map_location="cpu", weights_only=True)
            weights = load_file(str(directory / "weights.safetensors"))
            best = load_file(str(directory / "best.safetensors")) if (directory / "best.safetensors").is_file() else None
        except Exception as exc:  # noqa: BLE001 - any unreadable piece means the same to the user
            raise InputError(f"checkpoint {directory} cannot be read ({exc}); delete it to start again") from None
        if int(state["seed"]) != self.seed:
            raise InputError(f"checkpoint in {directory} was made with seed {state['seed']}, not {self.seed}")
        for name, module in self.task.modules.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
            module.to(self.device)
        for name, opt in self.task.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if best is not None:
            self._best_state = {k: v.to(self.device) for k, v in best.items()}
        self.step, self.best, self.best_step = int(state["step"]), float(state["best"]), int(state["best_step"])
        self.bad_validations = int(state["bad_validations"])
        self.history = list(state["history"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self._saved_step = self.step


CHECKPOINT_PREFIX = "step-"


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder in ``checkpoint_dir`` (``None`` if there is none).

    Temporary folders of a save that was killed are not complete checkpoints and are ignored. A
    folder in the older flat layout (``state.pt`` directly inside) is itself a checkpoint.

    >>> latest_checkpoint("/nonexistent") is None
    True
    """
    directory = Path(checkpoint_dir)
    found = sorted(
        p for p in directory.glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "state.pt").is_file()
    )
    if found:
        return found[-1]
    return directory if (directory / "state.pt").is_file() else None
