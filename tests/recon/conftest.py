"""Fixtures of the reconstruction tests."""

from __future__ import annotations

import numpy as np
import pytest


def _dense_matrix(n, n_det, theta, center):
    """The projector written out from the geometry's definition, in float64: pixel ``(r, c)`` at
    ``u = center + x cos - r sin`` reaches detector pixel ``j`` (centred at ``j + 0.5``) with the
    linear-interpolation weight ``max(0, 1 - |u - j - 0.5|)``."""
    coord = np.arange(n) + 0.5 - n / 2
    u = center + coord[None, None, :] * np.cos(theta)[:, None, None] - coord[None, :, None] * np.sin(theta)[:, None, None]
    j = np.arange(n_det) + 0.5
    weights = np.clip(1 - np.abs(u[:, None] - j[None, :, None, None]), 0, None)  # (angles, det, r, c)
    return weights.reshape(len(theta) * n_det, n * n)


@pytest.fixture
def dense_projector():
    """The plain truth the fast projector paths are tested against (small geometries only)."""
    return _dense_matrix
