import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.sim.dose import add_stripes, simulate_counts, sparse_angles


def test_noise_shrinks_with_dose_and_is_unbiased():
    clean = np.full((200, 2, 50), 1.0, dtype=np.float32)
    low, high = simulate_counts(clean, 1e3, rng=0), simulate_counts(clean, 1e5, rng=0)
    assert low.dtype == np.float32 and low.shape == clean.shape
    # Poisson: std of -log(counts) ~ 1/sqrt(i0 * exp(-p))
    assert low.std() == pytest.approx(1 / np.sqrt(1e3 * np.exp(-1)), rel=0.1)
    assert high.std() < low.std() / 5
    assert abs(high.mean() - 1.0) < 0.01


def test_zero_counts_are_clipped_not_infinite():
    out = simulate_counts(np.full((10, 10), 30.0, np.float32), 10, rng=1)
    assert np.isfinite(out).all() and out.max() == pytest.approx(np.log(10))


def test_sparse_angles_keeps_every_step():
    theta = np.linspace(0, np.pi, 12, endpoint=False)
    proj = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    t2, p2 = sparse_angles(theta, 3, proj)
    np.testing.assert_array_equal(t2, theta[::3])
    np.testing.assert_array_equal(p2, proj[::3])
    with pytest.raises(InputError, match="step"):
        sparse_angles(theta, 0)


def test_stripes_are_constant_over_angles():
    proj = np.random.default_rng(0).random((90, 5, 64)).astype(np.float32)
    striped = add_stripes(proj, fraction=0.2, strength=0.1, seed=0)
    offset = striped - proj
    assert np.allclose(offset, offset[:1], atol=1e-6)
    assert 0.05 < np.mean(np.abs(offset[0, 0]) > 1e-6) < 0.4


def test_bad_input():
    with pytest.raises(InputError, match="NaN"):
        simulate_counts(np.array([[np.nan]]), 100)
    with pytest.raises(InputError, match="i0"):
        simulate_counts(np.zeros((2, 2)), 0)
