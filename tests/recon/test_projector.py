import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError
from napari_tomoml.recon import backproject, cgls, project
from napari_tomoml.recon.geometry import angular_weights


def _dot(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


@pytest.mark.parametrize(
    "n, n_det, n_angles, center, uniform",
    [(33, 33, 40, None, True), (32, 32, 45, 17.3, False), (31, 40, 29, 21.75, False), (24, 20, 7, 9.5, True)],
)
def test_backprojector_is_the_exact_adjoint(rng, n, n_det, n_angles, center, uniform):
    theta = (
        np.linspace(0, np.pi, n_angles, endpoint=False)
        if uniform
        else np.sort(rng.uniform(0, 2 * np.pi, n_angles))
    )
    x = rng.standard_normal((3, n, n)).astype(np.float32)
    y = rng.standard_normal((n_angles, 3, n_det)).astype(np.float32)
    ax = project(x, theta, center=center, n_det=n_det, device="cpu")
    aty = backproject(y, theta, center=center, n=n, device="cpu")
    assert isinstance(ax, np.ndarray) and ax.shape == (n_angles, 3, n_det)
    assert aty.shape == (3, n, n)
    assert _dot(ax, y) == pytest.approx(_dot(x, aty), rel=1e-4)


def test_torch_in_torch_out_and_autograd_flows_through_both():
    theta = torch.linspace(0, np.pi, 9)
    x = torch.rand(1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.rand(9, 1, 10, dtype=torch.float64, requires_grad=True)
    ax = project(x, theta)
    assert isinstance(ax, torch.Tensor) and ax.dtype == torch.float64
    assert torch.autograd.gradcheck(
        lambda t: project(t, theta, center=4.7, n_det=10), (x,), eps=1e-6, atol=1e-6
    )
    assert torch.autograd.gradcheck(
        lambda t: backproject(t, theta, center=5.4, n=8), (y,), eps=1e-6, atol=1e-6
    )
    # a loss through the projector differentiates as its adjoint says
    loss = (project(x, theta, center=4.7, n_det=10) ** 2).sum()
    loss.backward()
    expected = 2 * backproject(project(x.detach(), theta, center=4.7, n_det=10), theta, center=4.7, n=8)
    torch.testing.assert_close(x.grad, expected)


def test_a_point_projects_to_a_sinusoid_at_the_centre_convention():
    n = 32
    img = np.zeros((n, n), np.float32)
    img[n // 2 - 1, n // 2 + 4] = 1.0  # pixel centre at x = 4.5, r = -0.5 from the image middle
    theta = np.array([0.0, np.pi / 2, np.pi])
    sino = project(img, theta, center=15.0, device="cpu")
    # u = center + x cos - r sin, in pixels from the left edge; detector pixel j is centred at j + 0.5
    for row, t in zip(sino, theta):
        u = 15.0 + 4.5 * np.cos(t) + 0.5 * np.sin(t)
        centroid = float(np.sum(row * (np.arange(n) + 0.5)) / row.sum())
        assert centroid == pytest.approx(u, abs=1e-4)
        assert row.sum() == pytest.approx(1.0)


def test_projection_matches_scikit_image_radon_at_odd_size():
    from skimage.transform import radon

    from napari_tomoml.sim.phantom import shepp_logan_3d

    img = shepp_logan_3d(65, 1)[0]
    theta = np.linspace(0, 180, 60, endpoint=False)
    ours = project(img, np.radians(theta), device="cpu")
    ref = radon(img, theta, circle=True).T
    assert np.sqrt(np.mean((ours - ref) ** 2)) < 0.02 * ref.max()


def test_angular_weights_cover_a_half_turn():
    for theta in (
        np.linspace(0, np.pi, 90, endpoint=False),
        np.linspace(0, 2 * np.pi, 360, endpoint=False),
        np.sort(np.random.default_rng(0).uniform(0, np.pi, 50)),
    ):
        w = angular_weights(theta)
        assert w.sum() == pytest.approx(np.pi) and (w >= 0).all()


def test_bad_inputs_raise_input_errors():
    theta = np.linspace(0, np.pi, 10)
    with pytest.raises(InputError, match="theta has 9 angles"):
        backproject(np.zeros((10, 16)), theta[:9])
    with pytest.raises(InputError, match="outside the detector"):
        backproject(np.zeros((10, 16)), theta, center=40)
    with pytest.raises(InputError, match="4-D"):
        project(np.zeros((2, 2, 8, 8)), theta)
    with pytest.raises(InputError, match="square"):
        project(np.zeros((2, 8, 9)), theta)
    with pytest.raises(InputError, match="entirely NaN"):
        backproject(np.full((10, 16), np.nan), theta)
    with pytest.raises(InputError, match="empty"):
        backproject(np.zeros((10, 0)), theta)


@pytest.mark.parametrize(
    "n, n_det, n_angles, center, dtype",
    [(33, 33, 40, None, torch.float32), (32, 40, 45, 17.3, torch.float64), (64, 50, 7, 9.5, torch.float32),
     (100, 120, 300, 70.25, torch.float32)],
)
def test_direct_backprojection_is_the_sparse_operator(rng, n, n_det, n_angles, center, dtype):
    from napari_tomoml.recon.direct import backproject_direct
    from napari_tomoml.recon.geometry import make_geometry
    from napari_tomoml.recon.projector import _backproject

    theta = np.sort(rng.uniform(0, 2 * np.pi, n_angles))
    geom = make_geometry(n, n_det, theta, n_det / 2 if center is None else center)
    y = torch.from_numpy(rng.standard_normal((n_angles, 3, n_det))).to(dtype)
    sparse = _backproject(y, geom)  # solver use: builds the matrices
    direct = backproject_direct(y, geom)
    assert direct.dtype == dtype and direct.shape == (3, n, n)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert float((direct - sparse).abs().max() / sparse.abs().max()) < tol


def test_one_off_calls_with_few_slices_skip_the_matrices():
    from napari_tomoml.recon.geometry import SparseProjector, clear_cache, make_geometry
    from napari_tomoml.recon.projector import _direct_is_faster

    clear_cache()
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    geom = make_geometry(24, 24, theta, 12.0)
    op = SparseProjector(geom, torch.float32, torch.device("cpu"))
    assert _direct_is_faster(op, 1, once=True) and not _direct_is_faster(op, 1, once=False)
    assert not _direct_is_faster(op, 64, once=True)
    backproject(np.ones((30, 24), np.float32), theta, center=12.0, device="cpu")
    assert not op.cached()  # the public one-off call built nothing
    cgls(np.ones((30, 24), np.float32), theta, center=12.0, n_iter=1, device="cpu")
    assert op.cached() and not _direct_is_faster(op, 1, once=True)  # then the product is cheapest
    huge = make_geometry(2048, 2048, np.linspace(0, np.pi, 1500, endpoint=False), 1024.0)
    op = SparseProjector(huge, torch.float32, torch.device("cpu"))
    assert _direct_is_faster(op, 4, once=False) and not _direct_is_faster(op, 8, once=True)


@pytest.mark.parametrize(
    "n, n_det, n_angles, center, dtype",
    [(33, 33, 40, None, torch.float32), (32, 40, 45, 17.3, torch.float64), (64, 50, 7, 9.5, torch.float32)],
)
def test_projector_pair_is_the_dense_matrix_cached_and_streamed(
    monkeypatch, rng, dense_projector, n, n_det, n_angles, center, dtype
):
    from napari_tomoml.recon import geometry
    from napari_tomoml.recon.geometry import SparseProjector, clear_cache, make_geometry
    from napari_tomoml.recon.projector import _backproject, _project

    theta = np.sort(rng.uniform(0, 2 * np.pi, n_angles))
    center = n_det / 2 if center is None else center
    dense = dense_projector(n, n_det, theta, center)
    geom = make_geometry(n, n_det, theta, center)
    x = torch.from_numpy(rng.standard_normal((3, n, n))).to(dtype)
    y = torch.from_numpy(rng.standard_normal((n_angles, 3, n_det))).to(dtype)
    truth_ax = (dense @ x.double().reshape(3, -1).T.numpy()).reshape(n_angles, n_det, 3).transpose(0, 2, 1)
    truth_aty = (dense.T @ y.double().permute(0, 2, 1).reshape(-1, 3).numpy()).T.reshape(3, n, n)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    monkeypatch.setattr(geometry, "_CHUNK_PAIRS", n * n * 3)  # several chunks of 3 angles
    chunk_bytes = n * n * 3 * (4 + torch.empty(0, dtype=dtype).element_size())
    for kept in (-(-n_angles // 3), 2, 0):  # all chunks cached, two of them, none (streamed)
        clear_cache()
        monkeypatch.setattr(geometry, "CACHE_BYTES", kept * chunk_bytes)
        assert SparseProjector(geom, dtype, torch.device("cpu")).kept == kept
        ax, aty = _project(x, geom), _backproject(y, geom)
        assert ax.dtype == aty.dtype == dtype
        assert np.abs(ax.double().numpy() - truth_ax).max() < tol * np.abs(truth_ax).max()
        assert np.abs(aty.double().numpy() - truth_aty).max() < tol * np.abs(truth_aty).max()


def test_geometries_beyond_the_cache_run_matrix_free(monkeypatch):
    from napari_tomoml.recon import geometry, sirt
    from napari_tomoml.recon.geometry import SparseProjector, clear_cache, make_geometry
    from napari_tomoml.sim.phantom import shepp_logan_3d

    vol = shepp_logan_3d(40, 2)
    theta = np.linspace(0, np.pi, 50, endpoint=False)
    proj = project(vol, theta, device="cpu")
    cached = sirt(proj, theta, n_iter=5, device="cpu")
    clear_cache()
    monkeypatch.setattr(geometry, "CACHE_BYTES", 1 << 16)  # far too small for this geometry
    op = SparseProjector(make_geometry(40, 40, theta, 20.0), torch.float32, torch.device("cpu"))
    assert not op.cacheable
    np.testing.assert_allclose(project(vol, theta, device="cpu"), proj, atol=1e-4)
    free = sirt(proj, theta, n_iter=5, device="cpu")
    assert not op.cached()  # nothing was built and kept
    np.testing.assert_allclose(free, cached, atol=1e-4)


def test_gpu_scatter_projection_is_the_cpu_product(rng):
    """The scatter-adds GPUs run for the transposed products, checked on the CPU against scipy's."""
    from napari_tomoml.recon.geometry import SparseProjector, _scatter_project, make_geometry

    geom = make_geometry(30, 34, np.sort(rng.uniform(0, np.pi, 12)), 16.6)
    op = SparseProjector(geom, torch.float64, torch.device("cpu"))
    flat = torch.from_numpy(rng.standard_normal((30 * 30, 2)))
    for i, angles in enumerate(op.chunks):
        cols, frac = op.pattern(i)
        k = angles.stop - angles.start
        scattered = _scatter_project(cols, frac, flat, k, k * geom.padded_width)
        torch.testing.assert_close(scattered, op.project_chunk(i, (cols, frac), flat), rtol=1e-12, atol=1e-12)
