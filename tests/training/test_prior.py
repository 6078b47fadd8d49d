"""Label-shift adjustment: EM recovers the image's class prior and the Bayes posteriors under it."""

import numpy as np
import pytest

from napari_tomoml.training.prior import adjust_to_image_prior


def _gaussian_mixture(prior, n=200_000, seed=0):
    """Two classes with unit-variance Gaussian likelihoods at -1 and +1, drawn with ``prior``."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < prior[1]).astype(int)
    x = rng.normal(np.where(labels == 1, 1.0, -1.0), 1.0)
    like = np.stack([np.exp(-0.5 * (x + 1) ** 2), np.exp(-0.5 * (x - 1) ** 2)])
    return like, labels


def _posterior(like, prior):
    p = like * np.asarray(prior)[:, None]
    return p / p.sum(0)


def test_em_recovers_the_image_prior_and_its_posteriors():
    like, labels = _gaussian_mixture((0.9, 0.1))
    balanced = _posterior(like, (0.5, 0.5))  # a network trained on class-balanced patches
    adjusted, prior = adjust_to_image_prior(balanced.astype(np.float32), [0.5, 0.5])
    assert prior == pytest.approx([0.9, 0.1], abs=0.01)
    np.testing.assert_allclose(adjusted, _posterior(like, prior), atol=1e-5)
    # the adjusted labels err less than the balanced ones (the Bayes decision under 0.9 / 0.1)
    assert (adjusted.argmax(0) != labels).mean() < (balanced.argmax(0) != labels).mean() - 0.03


def test_a_calibrated_network_is_left_alone():
    like, _ = _gaussian_mixture((0.7, 0.3), seed=1)
    calibrated = _posterior(like, (0.7, 0.3)).astype(np.float32)
    adjusted, prior = adjust_to_image_prior(calibrated, [0.7, 0.3])
    assert prior == pytest.approx([0.7, 0.3], abs=0.01)
    assert np.abs(adjusted - calibrated).max() < 0.02


def test_shape_is_kept():
    prob = np.full((3, 4, 5), 1 / 3, np.float32)
    adjusted, prior = adjust_to_image_prior(prob, [0.2, 0.3, 0.5])
    assert adjusted.shape == prob.shape and adjusted.dtype == np.float32 and prior.shape == (3,)
