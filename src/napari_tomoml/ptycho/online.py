"""Online training: keep training PtychoNN while labelled pairs arrive; hot-swap each new model into live mode.

The seed's loop: diffraction patterns stream in, an iterative reconstruction (ePIE) of finished
scan regions provides labels, the network trains on all pairs so far, the new model replaces the
live one, and training stops once the network's phase, on pairs it has not been trained on yet,
matches the iterative phase within a tolerance.

    pairs = LabelledPairs()
    steps = online_train_steps(pairs, on_model=engine.swap_model, tolerance=0.1)
    ... pairs.add(patterns, amplitude, phase) as each ePIE result is ready ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.store import LoadedModel
from ..progress import Progress
from .nn import predict, train_steps
from .sim import check_patterns


class LabelledPairs:
    """A thread-safe, growing set of (pattern, amplitude, phase) training pairs.

    >>> pairs = LabelledPairs()
    >>> pairs.add(np.ones((2, 8, 8)), np.ones((2, 8, 8)), np.zeros((2, 8, 8)))
    >>> len(pairs)
    2
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
        self.closed = False

    def add(self, patterns: np.ndarray, amplitude: np.ndarray | None, phase: np.ndarray) -> None:
        pats = check_patterns(patterns)
        phase = np.asarray(phase, np.float32).reshape(len(pats), *np.shape(phase)[-2:])
        amp = None if amplitude is None else np.asarray(amplitude, np.float32).reshape(phase.shape)
        with self._lock:
            self._parts.append((pats, amp, phase))

    def close(self) -> None:
        """No more pairs will come (training stops after the next round)."""
        self.closed = True

    def __len__(self) -> int:
        with self._lock:
            return sum(len(p[0]) for p in self._parts)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        with self._lock:
            parts = list(self._parts)
        pats = np.concatenate([p[0] for p in parts])
        amps = None if any(p[1] is None for p in parts) else np.concatenate([p[1] for p in parts])
        return pats, amps, np.concatenate([p[2] for p in parts])


def centre_phase_error(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Mean |phase difference| (rad) over the central half of each patch, where the probe is bright."""
    n = reference.shape[-1]
    c = slice(n // 4, n - n // 4)
    return float(np.mean(np.abs(predicted[:, c, c] - reference[:, c, c])))


def online_train_steps(
    pairs: LabelledPairs,
    *,
    tolerance: float = 0.1,
    round_steps: int = 200,
    max_rounds: int = 100,
    min_pairs: int = 64,
    on_model: Callable[[LoadedModel], Any] | None = None,
    model: Any = None,
    size: int = 64,
    device: str = "auto",
    poll: float = 0.1,
    **train_options: Any,
) -> Generator[Progress, None, LoadedModel | None]:
    """Train in rounds of ``round_steps`` on every pair received so far; after each round hand the model to
    ``on_model`` (e.g. ``LiveEngine.swap_model``). Before training on newly arrived pairs, the current model
    predicts them: when its central phase error is below ``tolerance`` (rad), training stops. Also stops
    after ``max_rounds`` or when ``pairs`` is closed and nothing new arrived. ``train_options`` go to
    :func:`~napari_tomoml.ptycho.nn.train_steps` (``phase_only``, ``nconv``, ``batch``, ``lr``...);
    ``model`` is a model to start from (it is checked on the first pairs before any training).

    Each Progress carries ``data={"round", "pairs", "error" (rad, or None before the first model)}``.

    >>> steps = online_train_steps(pairs, on_model=engine.swap_model, tolerance=0.1, size=64)  # doctest: +SKIP
    >>> model = run_to_end(steps, progress=True)                                              # doctest: +SKIP
    """
    if tolerance <= 0:
        raise InputError(f"tolerance must be a positive phase error in radians, got {tolerance}")
    from ..models.store import load_model

    model = None if model is None else load_model(model)  # a starting model: checked on the first pairs
    trained_on = 0
    for rnd in range(1, max_rounds + 1):
        while len(pairs) < max(min_pairs, trained_on + 1):
            if pairs.closed:
                return model
            yield Progress(rnd - 1, max_rounds, f"waiting for labelled pairs ({len(pairs)} so far)",
                           {"round": rnd, "pairs": len(pairs), "error": None})
            time.sleep(poll)
        pats, amps, phase = pairs.snapshot()
        error = None
        if model is not None:
            _, predicted = predict(pats[trained_on:], model=model, device=device)
            ref = phase[trained_on:] if predicted.shape[-1] == phase.shape[-1] else None
            if ref is None:
                from .nn import resize_stack

                ref = resize_stack(phase[trained_on:], predicted.shape[-1])
            error = centre_phase_error(predicted, ref)
            yield Progress(rnd - 1, max_rounds, f"phase error on new pairs {error:.3f} rad",
                           {"round": rnd, "pairs": len(pats), "error": error})
            if error < tolerance:
                return model
        options = dict(train_options)
        if model is not None:
            options["model"] = model
        model = yield from train_steps(pats, None if options.get("phase_only") else amps, phase, size=size,
                                       steps=round_steps, device=device, **options)
        trained_on = len(pats)
        if on_model is not None:
            on_model(model)
        yield Progress(rnd, max_rounds, f"round {rnd}: model updated ({trained_on} pairs)",
                       {"round": rnd, "pairs": trained_on, "error": error})
    return model
