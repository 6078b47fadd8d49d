import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.recon import fbp, find_center, project
from napari_tomoml.recon.center import center_stack
from napari_tomoml.sim.dose import simulate_counts
from napari_tomoml.sim.phantom import random_ellipsoids

N = 96


@pytest.fixture(scope="module")
def volume():
    return random_ellipsoids(N, 3, seed=1)


@pytest.mark.parametrize("offset", [0.0, -2.7, 3.25, -6.9])
@pytest.mark.parametrize("method", ["vo", "phase"])
def test_known_sub_pixel_centres_are_found(volume, method, offset):
    theta = np.linspace(0, np.pi, 181)  # includes 0 and 180 degrees for the phase method
    center = N / 2 + offset
    proj = project(volume, theta, center=center, device="cpu")
    noisy = simulate_counts(proj * (2 / proj.max()), 1e4, rng=0)
    assert find_center(noisy, theta, method=method) == pytest.approx(center, abs=0.25)


def test_vo_uses_the_first_half_turn_of_a_360_scan(volume):
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    proj = project(volume, theta, center=45.6, device="cpu")
    assert find_center(proj[:, 1], theta) == pytest.approx(45.6, abs=0.25)


def test_phase_needs_a_180_degree_pair(volume):
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    proj = project(volume, theta, device="cpu")
    with pytest.raises(InputError, match="180"):
        find_center(proj, theta, method="phase")


def test_center_stack_is_sharpest_at_the_true_centre(volume):
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    proj = project(volume, theta, center=50.5, device="cpu")
    centers = np.arange(46.5, 55.0, 1.0)
    stack = center_stack(proj, theta, centers, device="cpu")
    assert stack.shape == (len(centers), N, N)
    single = fbp(proj[:, 1], theta, center=50.5, circle=True, device="cpu")
    assert np.sqrt(np.mean((stack[4] - single) ** 2)) < 0.02 * single.max()  # as an FBP at that centre
    negative = [-s[s < 0].sum() for s in stack]
    assert int(np.argmin(negative)) == 4


def test_bad_arguments(volume):
    theta = np.linspace(0, np.pi, 60)
    proj = project(volume, theta, device="cpu")
    with pytest.raises(InputError, match="method"):
        find_center(proj, theta, method="guess")
    with pytest.raises(InputError, match="row=7"):
        find_center(proj, theta, row=7)
    with pytest.raises(InputError, match="search"):
        find_center(proj, theta, search=(50, 40))
    with pytest.raises(InputError, match="outside the detector"):
        center_stack(proj, theta, [10, 200])


def _tooth(shared_data):
    h5py = pytest.importorskip("h5py")
    path = shared_data / "real" / "tooth.h5"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with h5py.File(path, "r") as f:
        data, white, dark = (
            f[f"exchange/{k}"][:].astype(np.float64) for k in ("data", "data_white", "data_dark")
        )
        theta = np.radians(f["exchange/theta"][:])
    transmission = (data - dark.mean(0)) / (white.mean(0) - dark.mean(0))
    return (-np.log(np.clip(transmission, 1e-3, None))).astype(np.float32), theta


def test_real_tooth_scan_centre_and_sharp_reconstruction(shared_data):
    proj, theta = _tooth(shared_data)
    center = find_center(proj, theta)
    assert 295.0 <= center <= 296.5  # tomopy's find_center_vo on this scan: ~295.6
    recs = {
        c: fbp(proj[:, :1], theta, center=c, circle=True, device="cpu")[0]
        for c in (center - 5, center, center + 5)
    }

    def negative_mass(img):  # a wrong centre doubles edges and digs negative troughs beside them
        return -img[img < 0].sum() / np.abs(img).sum()

    assert negative_mass(recs[center]) < min(negative_mass(recs[center - 5]), negative_mass(recs[center + 5]))


@pytest.mark.parametrize("n_det, center", [(1024, 530.35), (700, 331.8)])
def test_detector_scale_search_through_the_pyramid(n_det, center):
    # exact line integrals of a few disks, so no projector is needed at this width
    theta = np.linspace(0, np.pi, 400, endpoint=False)
    s = np.arange(n_det) + 0.5 - center
    sino = np.zeros((len(theta), n_det))
    for value, x0, y0, r in [(1.0, 0.0, 0.0, 0.3), (0.5, 0.15, -0.1, 0.08), (-0.4, -0.12, 0.05, 0.1)]:
        d = s[None, :] / (n_det / 2) - (x0 * np.cos(theta) + y0 * np.sin(theta))[:, None]
        sino += value * np.sqrt(np.clip(r * r - d * d, 0, None)) * n_det
    assert find_center(sino.astype(np.float32), theta) == pytest.approx(center, abs=0.25)
