"""Stitching patches at their positions: weighted averages, growth, clipping at the borders."""

from __future__ import annotations

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.ptycho import sim
from napari_tomoml.ptycho.stitching import Stitcher, taper


def test_stitching_true_patches_gives_back_the_object():
    obj = np.angle(sim.random_object((80, 80), seed=4))
    pos = sim.spiral_scan(obj.shape, 24, 14, overlap=0.6)
    pts = sim.patches(obj, pos, 24)
    image = tm.ptycho.stitch(pts, pos, obj.shape)
    covered = Stitcher(obj.shape)
    covered.add(pts, pos)
    mask = covered.coverage() > 0
    np.testing.assert_allclose(image[mask], obj[mask], atol=1e-5)
    assert np.all(image[~mask] == 0)


def test_weighted_average_of_overlaps():
    a, b = np.full((4, 4), 1.0), np.full((4, 4), 3.0)
    w = np.ones((4, 4))
    image = tm.ptycho.stitch(np.stack([a, b]), np.array([[2, 2], [2, 4]]), (4, 8), weights=w)
    assert image[0].tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
    w2 = np.ones((4, 4))
    w2[:, 2:] = 3.0  # right half of each patch counts 3x
    image = tm.ptycho.stitch(np.stack([a, b]), np.array([[2, 2], [2, 4]]), (4, 8), weights=w2)
    assert image[0, 2] == pytest.approx((3 * 1 + 1 * 3) / 4)


def test_taper_weights_downweight_edges():
    w = taper(32)
    assert w.max() == 1.0 and w[16, 16] == 1.0 and w[0, 16] < 0.1
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])


def test_stitcher_grows_and_matches_one_shot():
    rng = np.random.default_rng(0)
    pos = rng.uniform(8, 60, size=(30, 2))
    pts = rng.random((30, 16, 16)).astype(np.float32)
    grow = Stitcher()
    for i in range(0, 30, 7):
        grow.add(pts[i : i + 7], pos[i : i + 7])
    once = tm.ptycho.stitch(pts, pos, (70, 70))
    np.testing.assert_allclose(grow.image(shape=(70, 70)), once, atol=1e-6)
    assert grow.count == 30


def test_patches_cut_at_the_border():
    image = tm.ptycho.stitch(np.ones((1, 8, 8)), np.array([[1.0, 1.0]]), (6, 6), weights=None)
    assert image[:5, :5].min() == 1.0 and image[5].max() == 0.0


def test_bad_stitch_input():
    with pytest.raises(InputError, match="match one to one"):
        tm.ptycho.stitch(np.ones((3, 4, 4)), np.zeros((2, 2)) + 2, (8, 8))
    with pytest.raises(InputError, match="weights"):
        tm.ptycho.stitch(np.ones((1, 4, 4)), np.array([[2, 2]]), (8, 8), weights=np.ones((3, 3)))


def test_illumination_weights_the_lit_disc():
    w = tm.ptycho.illumination(32, 10.0)
    yy, xx = np.mgrid[:32, :32] - 16
    r = np.hypot(yy, xx)
    assert w.shape == (32, 32) and w.dtype == np.float32
    assert np.all(w[r <= 5] == 1) and np.all(w[r >= 10] == 0)
    assert np.all(np.diff(w[16, 16:27]) <= 0)  # falls monotonically from the centre
    with pytest.raises(InputError, match="positive"):
        tm.ptycho.illumination(32, 0)
