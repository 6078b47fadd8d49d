"""Corrupted sinograms: each fault does what a beamline does, at the promised strength."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.sim import corrupt


@pytest.fixture(scope="module")
def small_stack():
    return corrupt.corrupted_sinogram_stack(60, n_corrupt_each=1, size=32, n_angles=60, seed=3)


def test_stack_layout_and_labels(small_stack):
    stack, theta, kinds = small_stack
    assert stack.shape == (60, 60, 32) and stack.dtype == np.float32
    assert np.isfinite(stack).all()
    assert theta[0] == 0 and theta[-1] < np.pi and len(theta) == 60
    assert sorted(k for k in kinds if k) == sorted(corrupt.KINDS)
    # clean sinograms are line integrals of a sample: mass constant over angle within noise
    clean = stack[kinds == ""]
    mass = clean.sum(-1)
    assert (mass.std(1) / mass.mean(1)).max() < 0.02


def test_same_seed_same_stack():
    a = corrupt.corrupted_sinogram_stack(20, n_corrupt_each=1, size=16, n_angles=20, seed=5)
    b = corrupt.corrupted_sinogram_stack(20, n_corrupt_each=1, size=16, n_angles=20, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[2], b[2])


def test_wrong_center_moves_the_first_moment(small_stack):
    stack, theta, kinds = small_stack
    x = np.arange(stack.shape[2]) + 0.5 - stack.shape[2] / 2
    # Helgason-Ludwig: first moment = mass x centre offset + a cos(theta) + b sin(theta)
    design = np.column_stack([np.ones_like(theta), np.cos(theta), np.sin(theta)])
    coef, *_ = np.linalg.lstsq(design, (stack @ x).T, rcond=None)
    offset = coef[0] / stack.sum(-1).mean(1)
    bad = offset[kinds == "wrong-center"]
    assert 1.5 < abs(bad[0]) < 3.5
    assert np.abs(offset[kinds == ""]).max() < 0.5


def test_missing_angles_are_a_dark_block():
    sino = np.full((100, 16), 0.5, np.float32)
    out = corrupt.drop_angles(sino, fraction=0.1, seed=1)
    dark = np.flatnonzero((out > 5).all(axis=1))
    assert len(dark) == 10 and np.all(np.diff(dark) == 1)
    assert np.array_equal(out[np.setdiff1d(np.arange(100), dark)], sino[np.setdiff1d(np.arange(100), dark)])


def test_zingers_are_sparse_and_lower_the_line_integral():
    sino = np.full((90, 64), 1.0, np.float32)
    out = corrupt.add_zingers(sino, fraction=0.01, seed=2)
    hit = out != sino
    assert 0.005 < hit.mean() < 0.02
    assert (out[hit] < 1.0).all() and (out[hit] > -1.2).all()


def test_stripes_are_constant_over_angles():
    rng = np.random.default_rng(0)
    sino = rng.random((90, 64)).astype(np.float32) + 1
    out = corrupt.add_gain_stripes(sino, fraction=0.05, strength=0.02, seed=0)
    diff = out - sino
    cols = np.flatnonzero(np.abs(diff).max(0) > 0)
    assert len(cols) == 3
    assert np.allclose(diff[:, cols], diff[0, cols], atol=1e-6)
    assert (np.abs(diff[0, cols]) >= 0.5 * 0.02 * out.max() * 0.99).all()


def test_angular_blur_is_a_moving_average_that_keeps_mass():
    t = np.random.default_rng(1).random((40, 8))
    b = corrupt.blur_angles(t, steps=4)
    assert np.isclose(b[10:30].sum(), t[8:30].sum() - 0, rtol=0.2)
    assert np.allclose(b[20], t[18:22].mean(0))  # a window of 4 angles


def test_too_small_a_stack_is_refused():
    with pytest.raises(InputError, match="cannot hold"):
        corrupt.corrupted_sinogram_stack(10, n_corrupt_each=2)
