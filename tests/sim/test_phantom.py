import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.sim.phantom import make_phantom, porous_rock, random_ellipsoids, shepp_logan_3d


@pytest.mark.parametrize("family", ["shepp-logan", "ellipsoids", "foam"])
def test_families_are_float32_in_range_and_zero_outside_the_cylinder(family):
    vol = make_phantom(family, 48, 6, seed=0)
    assert vol.shape == (6, 48, 48) and vol.dtype == np.float32
    assert 0.0 <= vol.min() and vol.max() <= 1.0 and vol.max() > 0.3
    yy, xx = np.mgrid[:48, :48] + 0.5 - 24
    assert np.all(vol[:, np.hypot(yy, xx) > 24] == 0)


def test_shepp_logan_middle_slice_is_the_2d_phantom():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    mid = shepp_logan_3d(101, 1)[0]
    ref = resize(shepp_logan_phantom(), (101, 101), order=0, anti_aliasing=False)
    assert np.mean(np.abs(mid - ref) > 0.05) < 0.05


def test_random_families_are_reproducible_and_differ_by_seed():
    np.testing.assert_array_equal(random_ellipsoids(32, 4, seed=5), random_ellipsoids(32, 4, seed=5))
    assert not np.array_equal(porous_rock(32, 4, seed=1), porous_rock(32, 4, seed=2))


def test_foam_is_smooth_along_z_and_has_the_asked_porosity():
    vol = porous_rock(96, 24, seed=3, porosity=0.3)
    inner = vol[:, 30:66, 30:66]
    adjacent = np.corrcoef(inner[7].ravel(), inner[8].ravel())[0, 1]
    far = np.corrcoef(inner[4].ravel(), inner[20].ravel())[0, 1]
    assert adjacent > 0.8 and adjacent > far
    yy, xx = np.mgrid[:96, :96] + 0.5 - 48
    core = vol[:, np.hypot(yy, xx) < 0.9 * 48]
    assert 0.25 < (core < 0.275).mean() < 0.35  # halfway between pore and grain


def test_families_differ_statistically():
    ell, foam = random_ellipsoids(64, 8, seed=0), porous_rock(64, 8, seed=0)
    # ellipsoids are piecewise constant, foam is textured everywhere
    assert np.mean(np.abs(np.diff(ell, axis=2)) > 1e-3) < np.mean(np.abs(np.diff(foam, axis=2)) > 1e-3)


def test_bad_arguments():
    with pytest.raises(InputError, match="family"):
        make_phantom("bananas", 32)
    with pytest.raises(InputError, match="n="):
        shepp_logan_3d(2)
