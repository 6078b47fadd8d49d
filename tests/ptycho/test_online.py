"""Online training: rounds on growing labelled data, hot swap into a running LiveEngine, stop at tolerance."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.progress import run_to_end
from napari_tomoml.ptycho import sim
from napari_tomoml.ptycho.live import LiveEngine, SimulatedDetector
from napari_tomoml.ptycho.online import LabelledPairs, online_train_steps


@pytest.fixture(scope="module")
def data():
    obj = sim.random_object((64, 64), seed=3)
    probe = sim.focused_probe(16, aperture=0.3, defocus=0.6, photons=1e4)
    pos = sim.raster_scan(obj.shape, 16, sim.probe_diameter(probe), overlap=0.7)
    lab = sim.patches(obj, pos, 16)
    return sim.simulate(obj, probe, pos, photons=1e4), np.abs(lab), np.angle(lab), pos


def test_models_hot_swap_into_a_running_engine(data):
    patterns, amp, phase, pos = data
    pairs = LabelledPairs()
    half = len(patterns) // 2
    pairs.add(patterns[:half], amp[:half], phase[:half])
    first = run_to_end(online_train_steps(pairs, tolerance=1e-6, round_steps=3, max_rounds=1, min_pairs=8,
                                          size=16, device="cpu", nconv=4, batch=8))
    engine = LiveEngine(SimulatedDetector(patterns, pos, rate=200.0, repeat=3), first, batch=8, device="cpu")
    live = engine.steps(update_every=0.05)
    next(live)
    pairs.add(patterns[half:], amp[half:], phase[half:])  # a later part of the scan is reconstructed
    pairs.close()
    errors = []
    # keep the engine's loop running on this thread between training progress (it is a generator too)
    for p in online_train_steps(pairs, tolerance=1e-6, round_steps=3, max_rounds=3, min_pairs=8, size=16,
                                device="cpu", model=first, nconv=4, batch=8, on_model=engine.swap_model):
        if p.data.get("error") is not None:
            errors.append(p.data["error"])
        next(live, None)
    result = run_to_end(live)
    assert engine.swaps >= 1
    assert result.counters["inferred"] == 3 * len(patterns) and result.counters["dropped"] == 0
    assert errors and all(np.isfinite(errors))  # measured on pairs before training on them


def test_stops_when_within_tolerance(data):
    patterns, amp, phase, _ = data
    pairs = LabelledPairs()
    pairs.add(patterns[:20], amp[:20], phase[:20])
    models = []
    steps = online_train_steps(pairs, tolerance=100.0, round_steps=2, max_rounds=5, min_pairs=8, size=16,
                               device="cpu", nconv=4, batch=8, on_model=models.append)
    feeder = threading.Timer(0.3, lambda: pairs.add(patterns[20:40], amp[20:40], phase[20:40]))
    feeder.start()
    final = run_to_end(steps)
    feeder.join()
    assert len(models) == 1 and final is models[0]  # second check met the tolerance: no second round


def test_bad_tolerance(data):
    with pytest.raises(InputError, match="tolerance"):
        next(online_train_steps(LabelledPairs(), tolerance=0))
