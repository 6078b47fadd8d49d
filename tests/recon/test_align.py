"""Classical alignment: sub-pixel shifting and registration, xcorr, joint projection matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_tomoml.errors import InputError
from napari_tomoml.progress import run_to_end
from napari_tomoml.recon.align import (
    check_stack,
    fourier_shift,
    joint_steps,
    register,
    remove_unobservable,
    residual_rms,
    xcorr_steps,
)
from napari_tomoml.sim.misalign import simulate_misaligned


@pytest.fixture(scope="module")
def stack():
    return simulate_misaligned(n=48, rows=16, n_angles=90, seed=5)


def _blob(rng, shape=(3, 40, 48)):
    img = ndimage.gaussian_filter(rng.random(shape), (0, 2, 2)).astype(np.float32)
    return img - img.mean()


def test_fourier_shift_matches_scipy(rng):
    img = ndimage.gaussian_filter(rng.random((3, 40, 48)), (0, 2, 2)).astype(np.float32)
    shifts = np.array([[0.3, -1.7], [2.25, 0.5], [-1.0, 3.1]])
    out = fourier_shift(torch.from_numpy(img), torch.from_numpy(shifts)).numpy()
    for i in range(3):
        ref = ndimage.shift(img[i], shifts[i], order=5, mode="nearest")
        np.testing.assert_allclose(out[i, 6:-6, 6:-6], ref[6:-6, 6:-6], atol=5e-3)


def test_register_is_sub_pixel_not_quantised(rng):
    ref = _blob(rng)
    true = np.array([[0.37, -2.61], [-1.04, 0.13], [2.5, 1.96]])
    mov = np.stack([ndimage.shift(r, s, order=5, mode="nearest") for r, s in zip(ref, true)])
    est = register(torch.from_numpy(mov), torch.from_numpy(ref), window=(0.2, 0.2)).numpy()
    assert np.abs(est - true).max() < 0.03  # tomopy quantises to 0.1 px


def test_remove_unobservable_and_residual():
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    jitter = np.random.default_rng(0).normal(size=(60, 2))
    rigid = np.stack([np.full(60, 3.0), 2 * np.cos(theta) - 4 * np.sin(theta) + 1.0], axis=1)
    np.testing.assert_allclose(remove_unobservable(jitter + rigid, theta), remove_unobservable(jitter, theta), atol=1e-9)
    kept = remove_unobservable(jitter + rigid, theta, keep_center=True)
    assert abs(kept[:, 1].mean() - (remove_unobservable(jitter, theta, keep_center=True)[:, 1].mean() + 1.0)) < 1e-9
    assert residual_rms(jitter + rigid, jitter, theta) < 1e-9


def test_joint_recovers_known_shifts(stack):
    before = residual_rms(np.zeros_like(stack.shifts), stack.shifts, stack.theta)
    shifts, meta = run_to_end(joint_steps(stack.projections, stack.theta, center=stack.center, levels=(2, 1)))
    after = residual_rms(shifts, stack.shifts, stack.theta)
    assert before > 2.0 and after < 0.15, (before, after)
    assert abs(meta["center_refined"] - stack.center) < 0.5
    assert meta["updates"][-1] < meta["updates"][0]  # it converges


def test_joint_refines_a_wrong_centre(stack):
    """Data whose axis sits 3 px right of the middle: the constant dx carries the centre offset."""
    shifted = simulate_misaligned(n=48, rows=16, n_angles=90, seed=5, shifts=stack.shifts + [0.0, 3.0])
    shifts, meta = run_to_end(joint_steps(shifted.projections, shifted.theta, center=shifted.center, levels=(2, 1)))
    assert abs(meta["center_refined"] - (shifted.center + 3.0)) < 0.3, meta["center_refined"]
    fixed, _ = run_to_end(joint_steps(shifted.projections, shifted.theta, refine_center=False, levels=(2,),
                                      iterations=3))
    assert abs(fixed[:, 1].mean()) < 1e-9


def test_xcorr_is_better_than_nothing(stack):
    shifts = run_to_end(xcorr_steps(stack.projections, stack.theta))
    assert residual_rms(shifts, stack.shifts, stack.theta) < 0.5 * residual_rms(0 * shifts, stack.shifts, stack.theta)


def test_bad_input():
    theta = np.linspace(0, np.pi, 4)
    with pytest.raises(InputError, match="at least two"):
        check_stack(np.zeros((1, 8, 8)), theta[:1])
    with pytest.raises(InputError, match="theta has 3"):
        check_stack(np.zeros((4, 8, 8)), theta[:3])
    bad = np.zeros((4, 8, 8))
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        check_stack(bad, theta)
    with pytest.raises(InputError, match="angles, rows, cols"):
        check_stack(np.zeros((4, 8)), theta)


def test_chunked_shift_and_registration_equal_one_batch(rng, monkeypatch):
    import napari_tomoml.recon.align as align

    img = torch.from_numpy(_blob(rng, (7, 24, 32)))
    shifts = torch.from_numpy(rng.normal(0, 2, (7, 2)))
    moved = fourier_shift(img, shifts)
    est = register(moved, img)
    monkeypatch.setattr(align, "_BATCH_ELEMENTS", 24 * 32 * 4 * 2)  # two images per batch
    torch.testing.assert_close(fourier_shift(img, shifts), moved)
    torch.testing.assert_close(register(moved, img), est)
