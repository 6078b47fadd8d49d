"""The public alignment task: tm.align / tm.apply_shifts / tm.train_aligner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_tomoml as tm
from napari_tomoml.errors import InputError, TomomlError
from napari_tomoml.progress import run_to_end
from napari_tomoml.recon.align import remove_unobservable, residual_rms
from napari_tomoml.sim.misalign import simulate_misaligned
from napari_tomoml.tasks.align import align_steps, row_before_after


@pytest.fixture(scope="module")
def stack():
    return simulate_misaligned(n=32, rows=16, n_angles=60, seed=4)


@pytest.mark.parametrize("method, limit", [("learned", 0.1), ("joint", 0.2), ("xcorr", 1.5)])
def test_known_shifts_are_recovered(stack, method, limit):
    shifts = tm.align(stack.projections, stack.theta, method=method, device="cpu")
    assert shifts.shape == (60, 2) and shifts.dtype == np.float64
    before = residual_rms(np.zeros((60, 2)), stack.shifts, stack.theta)
    assert residual_rms(shifts, stack.shifts, stack.theta) < min(limit, before / 2)


def test_apply_shifts_undoes_them_and_keeps_the_input(stack):
    data = stack.projections.copy()
    aligned = tm.apply_shifts(data, stack.shifts, device="cpu")
    np.testing.assert_array_equal(data, stack.projections)
    inner = (slice(None), slice(4, -4), slice(None))
    assert np.abs(aligned[inner] - stack.aligned[inner]).mean() < 0.01
    assert np.abs(stack.projections[inner] - stack.aligned[inner]).mean() > 0.05
    tensor = tm.apply_shifts(torch.from_numpy(data), stack.shifts)
    assert isinstance(tensor, torch.Tensor)


def test_alignment_sharpens_the_reconstruction(stack):
    shifts = tm.align(stack.projections, stack.theta, method="learned", device="cpu")
    # the rigid part only moves the sample, which no method can see: take the truth's to compare
    shifts = shifts + stack.shifts - remove_unobservable(stack.shifts, stack.theta)
    before, after = row_before_after(stack.projections, shifts, stack.theta, device="cpu")
    truth, _ = row_before_after(stack.aligned, np.zeros_like(shifts), stack.theta, device="cpu")
    assert np.abs(after - truth).mean() < 0.3 * np.abs(before - truth).mean()


def test_metadata_and_progress(stack):
    seen = []
    shifts, meta = run_to_end(align_steps(stack.projections, stack.theta, method="joint", levels=(1,),
                                          iterations=3, device="cpu"), seen.append)
    assert seen and seen[-1].total == 3
    assert meta["method"] == "joint" and "center_refined" in meta and meta["seconds"] >= 0


def test_bad_input_is_a_clear_error(stack):
    p, th = stack.projections, stack.theta
    with pytest.raises(InputError, match="at least two projections"):
        tm.align(p[:1], th[:1])
    with pytest.raises(InputError, match="theta has 59 angles"):
        tm.align(p, th[:-1])
    bad = p.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(TomomlError, match="NaN"):
        tm.align(bad, th, method="xcorr")
    with pytest.raises(InputError, match="unknown alignment method"):
        tm.align(p, th, method="magic")
    with pytest.raises(InputError, match="no option"):
        tm.align(p, th, method="xcorr", iterations=3)
    with pytest.raises(InputError, match=r"shifts must be \(angles, 2\)"):
        tm.apply_shifts(p, np.zeros((3, 2)))
    with pytest.raises(TomomlError, match="not an aligner|architecture"):
        tm.align(p, th, method="learned", model="tomogan-lowdose")


def test_train_aligner_gives_a_usable_model(tmp_path, stack):
    model = tm.train_aligner(steps=4, batch=1, n_phantoms=1, size=32, rows=8, n_angles=60, val_every=2,
                             path=tmp_path / "al")
    assert (tmp_path / "al.safetensors").is_file() and len(model.card["training"]["curve"]) == 2
    shifts = tm.align(stack.projections, stack.theta, method="learned", model=str(tmp_path / "al"), device="cpu")
    assert residual_rms(shifts, stack.shifts, stack.theta) < 0.3
