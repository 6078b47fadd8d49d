import numpy as np
import pytest
import torch

from napari_tomoml.recon import fbp, project
from napari_tomoml.recon.fbp import circle_mask
from napari_tomoml.recon.filters import filter_response
from napari_tomoml.recon.geometry import angular_weights
from napari_tomoml.recon.gridrec import _smooth_size, gridrec
from napari_tomoml.sim.phantom import shepp_logan_3d

# (value, x, y, radius) in units of the half-width: disks have exact line integrals at any
# detector position, so every engine gets data sampled on its own grid
DISKS = [(1.0, 0.0, 0.0, 0.8), (-0.5, -0.25, 0.2, 0.3), (0.4, 0.3, -0.3, 0.2), (0.3, 0.1, 0.45, 0.12)]


def _disk_sinogram(theta, positions, half):
    s = positions[None, :] / half
    sino = np.zeros((len(theta), len(positions)))
    for value, x0, y0, r in DISKS:
        d = s - (x0 * np.cos(theta) + y0 * np.sin(theta))[:, None]
        sino += value * 2 * np.sqrt(np.clip(r * r - d * d, 0, None))
    return (sino * half).astype(np.float32)


def _disk_image(xs, half):
    x, y = xs[None, :] / half, -xs[:, None] / half
    img = np.zeros((len(xs), len(xs)))
    for value, x0, y0, r in DISKS:
        img += value * ((x - x0) ** 2 + (y - y0) ** 2 <= r * r)
    return img.astype(np.float32)


def _plane_wave_sum(sino, theta, center, n):
    """The FBP gridrec approximates, summed directly: every filtered polar sample's plane wave."""
    n_det = sino.shape[-1]
    length = _smooth_size(2 * n_det, odd=True)
    omega = np.fft.fftfreq(length)
    h = filter_response("ramp", length)
    h = np.concatenate([h, h[1:][::-1]]) * np.sinc(omega) ** 2
    coef = angular_weights(theta)[:, None] / length * h * np.fft.fft(sino, n=length, axis=-1)
    coef = coef * np.exp(2j * np.pi * omega * (center - 0.5))
    x = np.arange(n) + 0.5 - n / 2
    out = np.zeros((n, n))
    for a, t in enumerate(theta):
        s = x[None, :] * np.cos(t) - x[:, None] * np.sin(t)
        out += np.real(np.exp(2j * np.pi * s[..., None] * omega) @ coef[a])
    return out


@pytest.mark.parametrize("n, center", [(33, 16.5), (32, 16.0), (32, 13.7)])
def test_gridding_matches_the_plane_wave_sum(n, center):
    img = shepp_logan_3d(n, 2)
    theta = np.linspace(0, np.pi, 50, endpoint=False)
    proj = project(img, theta, center=center, device="cpu")
    rec = gridrec(torch.from_numpy(proj), theta, center, n).numpy()
    for s in range(2):  # both slices of the packed complex pair
        exact = _plane_wave_sum(proj[:, s], theta, center, n)
        assert np.abs(rec[s] - exact).max() < 5e-4 * np.ptp(exact)


def test_packed_slices_do_not_mix():
    img = shepp_logan_3d(65, 1)[0]
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    sino = torch.from_numpy(project(img, theta, center=32.75, device="cpu")).double()
    alone = gridrec(sino[:, None], theta, 32.75, 65)[0]
    paired = gridrec(torch.stack([3 * sino, sino], 1), theta, 32.75, 65)[1]
    assert (alone - paired).abs().max() < 1e-12  # exactly real operator: the pair only rounds


@pytest.mark.parametrize("n", [128, 129])
def test_rmse_against_the_phantom_within_iradons(n):
    from skimage.transform import iradon

    theta = np.linspace(0, np.pi, 180, endpoint=False)
    mask = circle_mask(n) & (np.hypot(*np.meshgrid(*[np.arange(n) + 0.5 - n / 2] * 2)) < 0.45 * n)
    ours_x = np.arange(n) + 0.5 - n / 2  # tomopy's pixel centres, and detector at center = n / 2
    ski_x = np.arange(n) - n // 2.0  # scikit-image's: centres at index n // 2
    ours = fbp(_disk_sinogram(theta, ours_x, n / 2), theta, method="gridrec", device="cpu")
    ski = iradon(_disk_sinogram(theta, ski_x, n / 2).T, np.degrees(theta), circle=True)

    def rmse(rec, xs):
        return np.sqrt(np.mean((rec - _disk_image(xs, n / 2))[mask] ** 2))

    assert rmse(ours, ours_x) <= 1.1 * rmse(ski, ski_x)


@pytest.mark.parametrize("n, center", [(64, 32.0), (65, 32.5), (64, 27.3), (65, 36.8)])
@pytest.mark.parametrize("name", ["ramp", "hann", "butterworth"])
def test_agrees_with_the_backprojection_fbp(n, center, name):
    vol = np.pad(shepp_logan_3d(n - 16, 3), ((0, 0), (8, 8), (8, 8)))  # on the detector at every angle
    theta = np.linspace(0, np.pi, 150, endpoint=False)
    proj = project(vol, theta, center=center, device="cpu")
    grid = fbp(proj, theta, center, name, cutoff=0.9, circle=True, device="cpu", method="gridrec")
    plain = fbp(proj, theta, center, name, cutoff=0.9, circle=True, device="cpu", method="backprojection")
    assert np.sqrt(np.mean((grid - plain) ** 2)) < 0.02 * np.ptp(vol)
    # the off-centre axis lands where it should: both reconstruct the phantom, not a shifted one
    # (the back-projection is the transpose of the projector that made the data: it has the edge)
    assert np.sqrt(np.mean((grid - vol * circle_mask(n)) ** 2)) <= 1.1 * np.sqrt(
        np.mean((plain - vol * circle_mask(n)) ** 2)
    )


def test_auto_picks_gridrec_unless_gradients_are_needed():
    img = shepp_logan_3d(32, 2)
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    proj = project(img, theta, device="cpu")
    np.testing.assert_array_equal(fbp(proj, theta, device="cpu"), fbp(proj, theta, device="cpu", method="gridrec"))
    t = torch.from_numpy(proj).requires_grad_()
    rec = fbp(t, theta, device="cpu")
    rec.sum().backward()
    np.testing.assert_allclose(
        rec.detach().numpy(), fbp(proj, theta, device="cpu", method="backprojection"), atol=1e-6
    )
    assert t.grad is not None and t.grad.shape == t.shape
