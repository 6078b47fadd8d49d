"""Ptychography simulation: objects, probe, scans, far-field patterns, detector crop/bin, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.ptycho import sim


def test_object_from_image_is_one_material():
    img = np.random.default_rng(0).random((20, 30))
    obj = sim.object_from_image(img, max_phase=2.0, absorption=0.5)
    t = (img - img.min()) / (img.max() - img.min())
    np.testing.assert_allclose(np.angle(obj), 2.0 * t, atol=1e-5)
    np.testing.assert_allclose(np.abs(obj), np.exp(-0.5 * t), atol=1e-6)


def test_random_objects_differ_by_seed_and_repeat():
    a, b = sim.random_object((48, 48), seed=1), sim.random_object((48, 48), seed=2)
    assert np.array_equal(a, sim.random_object((48, 48), seed=1))
    assert not np.array_equal(a, b)
    assert 0.0 <= np.angle(a).min() and np.angle(a).max() <= 1.5 + 1e-6


def test_probe_diffraction_is_the_pupil_disc():
    probe = sim.focused_probe(64, aperture=0.2, defocus=1.0, photons=1e6)
    far = np.abs(np.fft.fftshift(np.fft.fft2(probe, norm="ortho"))) ** 2
    f = np.fft.fftshift(np.fft.fftfreq(64))
    rho = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    assert far[rho > 0.2 + 1e-9].sum() < 1e-3 * far.sum()  # nothing outside the lens aperture
    assert far.sum() == pytest.approx(1e6, rel=1e-4)


def test_raster_overlap_sets_the_step():
    pos = sim.raster_scan((100, 100), 32, 20, overlap=0.5)
    steps = np.diff(np.unique(pos[:, 1]))
    np.testing.assert_allclose(steps, 10.0)
    assert pos.min() >= 16 and pos.max() <= 100 - 16


def test_spiral_spacing_follows_overlap():
    from scipy.spatial import cKDTree

    for overlap in (0.5, 0.7):
        pos = sim.spiral_scan((160, 160), 32, 20, overlap=overlap)
        nearest = cKDTree(pos).query(pos, k=2)[0][:, 1]
        step = 20 * (1 - overlap)
        assert 0.6 * step < np.median(nearest) < 1.4 * step
        assert pos.min() >= 16 and pos.max() <= 160 - 16


def test_patterns_match_the_fourier_transform_and_counts():
    obj = sim.random_object((64, 64), seed=3)
    probe = sim.focused_probe(32, photons=1e4)
    pos = np.array([[30.0, 33.0]])
    clean = tm.ptycho.simulate(obj, probe, pos, photons=None)
    window = obj[14:46, 17:49]
    expected = np.abs(np.fft.fftshift(np.fft.fft2(probe * window, norm="ortho"))) ** 2
    np.testing.assert_allclose(clean[0], expected, rtol=1e-4, atol=1e-3)
    assert clean[0].sum() == pytest.approx((np.abs(probe * window) ** 2).sum(), rel=1e-5)
    noisy = [tm.ptycho.simulate(obj, probe, pos, photons=1e4, seed=s)[0] for s in range(40)]
    assert np.all(np.mod(noisy[0], 1) == 0)  # counts
    # Poisson: mean ≈ expectation, variance ≈ mean (summed over the bright pixels)
    stack = np.stack(noisy)
    bright = expected * 1e4 / (np.abs(probe) ** 2).sum() > 20
    mean, var = stack.mean(0)[bright], stack.var(0)[bright]
    scale = 1e4 / (np.abs(probe) ** 2).sum()
    assert mean.sum() == pytest.approx((expected * scale)[bright].sum(), rel=0.02)
    assert var.sum() == pytest.approx(mean.sum(), rel=0.15)


def test_detector_crop_and_bin_keep_the_centre_and_counts():
    frames = np.zeros((1, 516, 516), np.float32)
    frames[0, 258, 258] = 5.0  # the zero frequency (pixel n//2)
    frames[0, 258 - 63, 258] = 1.0  # inside a 128 crop
    frames[0, 0, 0] = 100.0  # outside
    out = sim.detector_reduce(frames, (128, 2))
    assert out.shape == (1, 64, 64)
    assert out.sum() == 6.0 and out[0, 32, 32] == 5.0
    with pytest.raises(InputError, match="divide"):
        sim.detector_reduce(frames, (128, 3))
    with pytest.raises(InputError, match="does not fit"):
        sim.detector_reduce(frames, 600)


def test_simulate_with_detector_reduction():
    obj = sim.random_object((160, 160), seed=0)
    probe = sim.focused_probe(128, photons=1e6)
    pos = np.array([[80.0, 80.0]])
    full = tm.ptycho.simulate(obj, probe, pos, photons=None)
    red = tm.ptycho.simulate(obj, probe, pos, photons=None, detector=(64, 2))
    assert red.shape == (1, 32, 32)
    np.testing.assert_allclose(red, sim.detector_reduce(full, (64, 2)), rtol=1e-5)


def test_patches_are_the_windows():
    obj = sim.random_object((64, 64), seed=0)
    pos = np.array([[20.0, 40.0]])
    np.testing.assert_array_equal(sim.patches(obj, pos, 16)[0], obj[12:28, 32:48])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"positions": np.array([[5.0, 30.0]])}, "leave the object"),
        ({"positions": np.array([[np.nan, 30.0]])}, "NaN"),
        ({"positions": np.zeros((3, 3))}, r"\(N, 2\)"),
        ({"probe": np.ones((32, 30), np.complex64)}, "square"),
        ({"photons": -1.0}, "positive"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, match):
    args = {"obj": sim.random_object((64, 64)), "probe": sim.focused_probe(32), "positions": np.array([[32.0, 32.0]])}
    photons = kwargs.pop("photons", 1e5)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        tm.ptycho.simulate(args["obj"], args["probe"], args["positions"], photons=photons)


def test_public_names_and_submodules_are_reachable_from_tm():
    import napari_tomoml.ptycho as ptycho

    for name in ptycho.__all__:
        assert getattr(tm.ptycho, name) is not None
    assert tm.ptycho.live.LiveEngine is tm.ptycho.LiveEngine
    assert tm.ptycho.sim.simulate is tm.ptycho.simulate
