import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_tomoml.errors import InputError
from napari_tomoml.recon import fbp, project, remove_stripes
from napari_tomoml.sim.dose import add_stripes, simulate_counts
from napari_tomoml.sim.phantom import porous_rock, random_ellipsoids, shepp_logan_3d

PHANTOMS = {
    "rock": lambda: porous_rock(128, 2, seed=0),
    "shepp": lambda: shepp_logan_3d(128, 2),
    "ellipsoids": lambda: random_ellipsoids(128, 2, seed=3),
}


def _scan(name):
    vol = PHANTOMS[name]()
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    proj = simulate_counts(project(vol, theta, device="cpu") * 0.05, 1e4, rng=0) / 0.05
    return vol, theta, proj, add_stripes(proj, fraction=0.1, strength=0.02, seed=1)


def _gradient(img):
    return np.hypot(ndimage.sobel(img, axis=-1), ndimage.sobel(img, axis=-2))


def _scores(vol, theta, proj, striped, **kw):
    """Fraction of the ring energy left, energy of the change to a clean scan (both relative to
    the rings), and the edge contrast kept on a clean scan (gradient on the phantom's edges)."""
    clean = fbp(proj, theta, device="cpu")
    rings = np.sum((fbp(striped, theta, device="cpu") - clean) ** 2)
    left = np.sum((fbp(remove_stripes(striped, **kw), theta, device="cpu") - clean) ** 2)
    untouched = fbp(remove_stripes(proj, **kw), theta, device="cpu")
    edges = np.stack([_gradient(s) > 0.1 * _gradient(s).max() for s in vol])
    kept = _gradient(untouched)[edges].mean() / _gradient(clean)[edges].mean()
    return left / rings, np.sum((untouched - clean) ** 2) / rings, kept


@pytest.mark.parametrize("name", ["rock", "shepp"])
def test_most_ring_energy_is_removed_and_the_object_kept(name):
    left, damage, kept = _scores(*_scan(name))
    assert left < 0.3
    assert damage < 0.2
    assert kept > 0.99


def test_fourier_wavelet_removes_most_rings_without_blurring_edges():
    left, damage, kept = _scores(*_scan("ellipsoids"), method="fw")
    assert left < 0.5
    assert damage < 0.15
    assert kept > 0.97


@pytest.mark.parametrize("name", ["rock", "shepp"])
def test_sorting_beats_fourier_wavelet_hence_the_default(name):
    # fw also damps structure near the axis that barely changes with the angle
    scan = _scan(name)
    assert _scores(*scan)[0] < 0.6 * _scores(*scan, method="fw")[0]


@pytest.mark.parametrize("method", ["sorting", "fw"])
def test_shapes_and_kinds_are_kept(method):
    sino = np.random.default_rng(0).random((40, 32)).astype(np.float32)
    assert remove_stripes(sino, method=method).shape == (40, 32)
    out = remove_stripes(torch.from_numpy(sino[:, None, :]), method=method)
    assert isinstance(out, torch.Tensor) and out.shape == (40, 1, 32) and out.dtype == torch.float32
    odd = remove_stripes(np.ones((37, 3, 51), np.float32), method=method)
    assert odd.shape == (37, 3, 51) and np.allclose(odd, 1.0, atol=1e-4)  # nothing to remove


def test_bad_arguments():
    with pytest.raises(InputError, match="method"):
        remove_stripes(np.zeros((10, 10)), method="guess")
    with pytest.raises(InputError, match="size"):
        remove_stripes(np.zeros((10, 10)), size=1)
    with pytest.raises(InputError, match="level"):
        remove_stripes(np.zeros((10, 10)), method="fw", level=0)
    with pytest.raises(InputError, match="wavelet"):
        remove_stripes(np.zeros((10, 10)), method="fw", wname="db99")
    with pytest.raises(InputError, match="sigma"):
        remove_stripes(np.zeros((10, 10)), method="fw", sigma=0)
