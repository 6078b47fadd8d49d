"""Misalignment simulation: the convention, the statistics, the truth kept."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_tomoml.errors import InputError
from napari_tomoml.sim.misalign import random_shifts, shift_projections, simulate_misaligned


def test_random_shifts_statistics():
    s = random_shifts(4000, sigma_x=4.0, sigma_y=1.0, drift=0.5, rng=0)
    assert s.shape == (4000, 2)
    assert abs(s[:, 1].std() - 4.0) < 0.3 and abs(s[:, 0].std() - 1.0) < 0.1
    # drift makes neighbours correlated; pure jitter does not
    corr = np.corrcoef(s[:-1, 1], s[1:, 1])[0, 1]
    jitter = random_shifts(4000, drift=0.0, rng=0)
    assert corr > 0.3 and abs(np.corrcoef(jitter[:-1, 1], jitter[1:, 1])[0, 1]) < 0.1


def test_measured_is_scipy_shift_of_aligned():
    st = simulate_misaligned(n=32, rows=12, n_angles=20, seed=3)
    width = st.projections.shape[-1]
    assert st.projections.shape == st.aligned.shape == (20, 12, width) and width >= 48
    assert width - 32 >= 2 * np.abs(st.shifts[:, 1]).max()  # the object stays in view
    # rows away from the top/bottom edge: exactly scipy's shift of the truth (same spline)
    for i in (0, 7, 19):
        ref = ndimage.shift(st.aligned[i], st.shifts[i], order=3)
        np.testing.assert_allclose(st.projections[i, 4:-4], ref[4:-4], atol=0.05)
    assert st.center == width / 2 and st.volume.shape == (12, width, width)


def test_noise_background_and_tilts_change_the_data():
    clean = simulate_misaligned(n=32, rows=8, n_angles=10, seed=1)
    noisy = simulate_misaligned(n=32, rows=8, n_angles=10, seed=1, i0=1e3, background=0.05, tilt_deg=1.0)
    assert np.abs(noisy.tilts).max() > 0 and np.all(clean.tilts == 0)
    assert np.abs(noisy.projections - clean.projections).std() > 0.01
    np.testing.assert_array_equal(noisy.shifts, clean.shifts)


def test_bad_input():
    with pytest.raises(InputError, match="n_angles"):
        random_shifts(1)
    with pytest.raises(InputError, match="shifts"):
        shift_projections(np.zeros((3, 4, 4)), np.zeros((2, 2)))
    with pytest.raises(InputError, match="shifts must be"):
        simulate_misaligned(n=16, rows=4, n_angles=5, shifts=np.zeros((4, 2)))
