"""Training the learned aligner (:class:`~napari_tomoml.models.aligner.MomentAligner`) on
simulated misaligned stacks.

Data: a pool of phantoms is projected once, taller than the detector (so vertical shifts bring
real sample into view); every step draws fresh shifts (slow drift + jitter, random strength so
both first guesses and the small residuals of later iterations are seen), attenuation, photon
noise and background drift, shifts the projections in Fourier space and crops the rows in view.
Loss: mean squared error between the *observable* parts of predicted and true dx
(:func:`~napari_tomoml.models.aligner.observable`), in px².

Not the shared :class:`~napari_tomoml.training.trainer.Trainer`: its validation scores images
(PSNR/SSIM) while this model is scored by the shift error of the whole iterated predictor; the
loop below keeps the same contract (seeded steps, Progress with losses, cancel at a yield, best
weights restored).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError
from ..models.aligner import MomentAligner, margin_rows, observable, predict_shifts, profiles
from ..progress import Progress, run_to_end
from ..recon.align import fourier_shift, residual_rms
from ..recon.projector import project
from ..sim.misalign import random_shifts, simulate_misaligned
from ..sim.phantom import make_phantom


@dataclass
class AlignerData:
    """Tall, aligned projection stacks of ``n_phantoms`` phantoms, ready to be misaligned."""

    n: int = 64
    rows: int = 32
    n_angles: int = 180
    n_phantoms: int = 16
    family: str = "ellipsoids"
    seed: int = 0
    margin: int = 6
    stacks: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.theta = np.linspace(0, np.pi, self.n_angles, endpoint=False)
        pad = self.n // 3  # wide enough that the largest drawn shifts keep the object in view
        for _ in range(self.n_phantoms):
            vol = make_phantom(self.family, self.n, self.rows + 2 * self.margin, seed=rng)
            vol = np.pad(vol, ((0, 0), (pad, pad), (pad, pad)))
            tall = project(vol, self.theta, device="cpu")
            self.stacks.append((tall / max(float(tall.max()), 1e-12)).astype(np.float32))

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray, int]:
        """One misaligned stack ``(angles, rows, cols)``, its true shifts and the row margin a
        predictor would crop at this point of its iterations."""
        tall = torch.from_numpy(self.stacks[rng.integers(len(self.stacks))])
        if rng.random() < 0.5:
            tall = tall.flip(-1)
        strength = 1.0 if rng.random() < 0.5 else rng.uniform(0.02, 0.5)
        shifts = random_shifts(self.n_angles, sigma_x=rng.uniform(0.5, 5.0) * strength,
                               sigma_y=rng.uniform(0.2, 1.5) * strength, drift=rng.uniform(0, 1), rng=rng)
        shifts[:, 0] = np.clip(shifts[:, 0], -self.margin + 1, self.margin - 1)
        moved = fourier_shift(tall * rng.uniform(0.5, 3.0), torch.from_numpy(shifts).float())
        stack = moved[:, self.margin : self.margin + self.rows]
        background = rng.uniform(0, 0.05) if rng.random() < 0.5 else 0.0
        if background:
            stack = stack + torch.from_numpy(background * _drift(self.n_angles, rng)).float()[:, None, None]
        if rng.random() < 0.6:
            i0 = 10 ** rng.uniform(2.5, 5)
            counts = torch.poisson(i0 * torch.exp(-stack.double()),
                                   generator=torch.Generator().manual_seed(int(rng.integers(2**62))))
            stack = -torch.log(counts.clamp_min(1.0) / i0).float()
        guess = shifts[:, 0] * (1 - rng.uniform(0, 1))  # the estimate a later iteration crops by
        return stack, shifts, margin_rows(guess, self.rows)


def _drift(n: int, rng: np.random.Generator) -> np.ndarray:
    from ..sim.misalign import _smooth_unit

    return _smooth_unit(n, rng, 5.0)


def validation_stacks(count: int = 4, *, n: int = 64, rows: int = 32, seed: int = 10_000, **kwargs):
    """Held-out simulated stacks (σx = 4, σy = 1 px by default) for validation curves."""
    return [simulate_misaligned(n=n, rows=rows, seed=seed + i, **kwargs) for i in range(count)]


def evaluate(model: MomentAligner, stacks, *, iterations: int = 4) -> float:
    """Mean RMS residual (px, unobservable parts removed) of the iterated predictor on ``stacks``."""
    errors = []
    for s in stacks:
        proj = torch.from_numpy(s.projections)
        est = run_to_end(predict_shifts(model, proj, s.theta, iterations=iterations))
        errors.append(residual_rms(est, s.shifts, s.theta))
    return float(np.mean(errors))


def train_aligner_steps(
    model: MomentAligner | None = None,
    *,
    steps: int = 1500,
    batch: int = 4,
    lr: float = 5e-4,
    val_every: int = 100,
    data: AlignerData | None = None,
    validation=None,
    seed: int = 0,
) -> Generator[Progress, None, tuple[MomentAligner, dict]]:
    """Train (a new or given) aligner; yields Progress with ``data={"step", "loss", "validation"}``
    and returns ``(model, record)`` with the training curve and the best validation error. The
    best validated weights are restored at the end, also when the run is stopped early."""
    if steps < 1 or batch < 1:
        raise InputError(f"steps={steps} and batch={batch} must be positive")
    model = model or MomentAligner()
    data = data or AlignerData(seed=seed)
    validation = validation if validation is not None else validation_stacks(2)
    theta = torch.from_numpy(data.theta)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    curve: list[dict] = []
    best, best_state, best_step = float("inf"), None, 0
    start = time.perf_counter()
    losses: list[float] = []
    step = 0
    try:
        for step in range(1, steps + 1):
            rng = np.random.default_rng([seed, step])
            model.train()
            loss = torch.zeros((), dtype=torch.float64)
            for _ in range(batch):
                stack, shifts, margin = data.sample(rng)
                _, col_p = profiles(stack, margin)
                pred_x = model(col_p).double()
                pred = torch.stack([torch.zeros_like(pred_x), pred_x], dim=1)
                target = torch.from_numpy(shifts)
                loss = loss + ((observable(pred, theta) - observable(target, theta))[:, 1] ** 2).mean()
            loss = loss / batch
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            info: dict = {"step": step, "loss": losses[-1]}
            if step % val_every == 0 or step == steps:
                val = evaluate(model, validation)
                record = {"step": step, "train_loss": float(np.mean(losses[-val_every:])), "val_rms_px": val,
                          "seconds": round(time.perf_counter() - start, 1)}
                curve.append(record)
                info["validation"] = record
                if val < best:
                    best, best_step = val, step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            yield Progress(step, steps, f"training aligner, step {step}/{steps}", info)
    finally:
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
    return model, {"curve": curve, "best_val_rms_px": best, "best_step": best_step, "steps": step,
                   "seconds": round(time.perf_counter() - start, 1)}
