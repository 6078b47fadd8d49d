"""Class priors of a segmenter re-estimated on its training images (label-shift adjustment).

A segmenter trained on class-balanced patches learns posteriors under the class frequencies of
its training batches, not those of the images. Where the labels pin every boundary (dense masks)
the two nearly agree; with sparse strokes, which stay inside objects, the balanced batches hold
far more of a rare class than the images do, and the network grows rare objects into the
unannotated band around them (inclusions 1.44x their true area on the #7 benchmark).

:func:`adjust_to_image_prior` runs the EM algorithm of Saerens, Latinne & Decaestecker (Neural
Computation 14, 2002): the images' class prior is estimated as the mean of the posteriors
re-weighted by (image prior / training prior), until it stops changing. Only the ratio of priors
enters, so a network that was already calibrated to the images is left as it was. EM trusts
the posteriors; a badly calibrated network can drive a class to zero, which is why the caller
checks the result against the annotated pixels before using it.

>>> import numpy as np
>>> prob = np.array([[0.6, 0.6, 0.9, 0.9], [0.4, 0.4, 0.1, 0.1]], np.float32)  # (classes, pixels)
>>> adjusted, prior = adjust_to_image_prior(prob, [0.5, 0.5])
>>> adjusted.argmax(0).tolist(), prior.round(2).tolist()
([0, 0, 0, 0], [1.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_ITER = 100
TOL = 1e-5


def adjust_to_image_prior(prob: np.ndarray, training_prior: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors ``prob`` (classes, ...) adjusted to the class prior of these pixels; returns
    (adjusted float32 posteriors, the estimated prior). ``training_prior``: positive frequencies."""
    train = np.asarray(training_prior, np.float64)
    train = train / train.sum()
    p = np.asarray(prob, np.float64).reshape(prob.shape[0], -1)

    def reweighted(prior: np.ndarray) -> np.ndarray:
        w = p * (prior / train)[:, None]
        return w / np.maximum(w.sum(0, keepdims=True), np.finfo(np.float64).tiny)

    prior = train.copy()
    for _ in range(MAX_ITER):
        new = reweighted(prior).mean(1)
        converged = np.abs(new - prior).max() < TOL
        prior = new
        if converged:
            break
    return reweighted(prior).reshape(prob.shape).astype(np.float32), prior
