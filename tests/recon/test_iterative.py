import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError
from napari_tomoml.progress import run_to_end
from napari_tomoml.recon import cgls, fbp, project, sirt, solve
from napari_tomoml.recon.iterative import sirt_steps
from napari_tomoml.sim.dose import simulate_counts
from napari_tomoml.sim.phantom import shepp_logan_3d

N = 64


@pytest.fixture(scope="module")
def sparse_noisy():
    vol = shepp_logan_3d(N, 2)
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    proj = project(vol, theta, device="cpu")
    noisy = simulate_counts(proj * 0.1, 2e3, rng=0) / 0.1
    return vol, theta, proj, noisy


def _psnr(rec, ref):
    return 10 * np.log10(ref.max() ** 2 / np.mean((rec - ref) ** 2))


@pytest.mark.parametrize("method, n_iter", [(sirt, 40), (cgls, 15)])
def test_residual_decreases(sparse_noisy, method, n_iter):
    vol, theta, proj, _ = sparse_noisy
    residuals = []
    rec = method(proj, theta, n_iter=n_iter, device="cpu", callback=lambda it, x, r: residuals.append(r))
    assert rec.shape == vol.shape and len(residuals) == n_iter
    assert residuals[-1] < 0.5 * residuals[0]
    assert all(b <= a * 1.001 for a, b in zip(residuals, residuals[1:]))
    assert _psnr(rec, vol) > _psnr(fbp(proj, theta, device="cpu"), vol) - 1


def test_tv_beats_fbp_on_sparse_noisy_views(sparse_noisy):
    vol, theta, _, noisy = sparse_noisy
    residuals = []
    rec = solve(
        noisy, theta, tv=0.01, n_iter=100, device="cpu", callback=lambda it, x, r: residuals.append(r)
    )
    assert np.mean(residuals[-10:]) < residuals[0]
    assert rec.min() >= 0
    assert _psnr(rec, vol) > _psnr(fbp(noisy, theta, device="cpu"), vol) + 4


def test_solve_with_angle_batches_support_and_l1(sparse_noisy):
    vol, theta, _, noisy = sparse_noisy
    support = np.zeros((N, N), bool)
    support[8:-8, 8:-8] = True
    rec = solve(
        noisy[:, 0], theta, tv=0.01, l1=0.001, support=support, batch_angles=10, n_iter=60, device="cpu"
    )
    assert rec.shape == (N, N) and np.all(rec[~support] == 0)
    assert _psnr(rec, vol[0]) > _psnr(fbp(noisy[:, 0], theta, device="cpu"), vol[0]) + 2


def test_torch_in_torch_out_and_steps_report_progress(sparse_noisy):
    _, theta, proj, _ = sparse_noisy
    seen = []
    rec = run_to_end(sirt_steps(torch.from_numpy(proj), theta, n_iter=3, device="cpu"), seen.append)
    assert isinstance(rec, torch.Tensor)
    assert [p.done for p in seen] == [1, 2, 3] and "residual" in seen[-1].data


def test_bad_arguments(sparse_noisy):
    _, theta, proj, _ = sparse_noisy
    with pytest.raises(InputError, match="n_iter"):
        sirt(proj, theta, n_iter=0)
    with pytest.raises(InputError, match="support"):
        solve(proj, theta, support=np.ones((5, 5)), n_iter=1, device="cpu")
    with pytest.raises(InputError, match="regularisation"):
        solve(proj, theta, tv=-1, n_iter=1)


def _dense_sirt(dense, y, n, n_iter):
    """SIRT written out on the dense matrix in float64: x += C A^T R (y - A x), clipped at 0."""
    inv_rows = 1 / np.clip(dense.sum(axis=1), 1e-6, None)
    inv_cols = 1 / np.clip(dense.sum(axis=0), 1e-6, None)
    x = np.zeros((n * n, y.shape[1]))
    for _ in range(n_iter):
        x = np.clip(x + inv_cols[:, None] * (dense.T @ (inv_rows[:, None] * (y - dense @ x))), 0, None)
    return x


@pytest.mark.parametrize("slices", [1, 5])
def test_sirt_is_the_dense_sirt_cached_and_streamed(monkeypatch, dense_projector, slices):
    from napari_tomoml.recon import geometry

    n, n_det, center = 40, 46, 23.4
    theta = np.linspace(0, np.pi, 37, endpoint=False)
    vol = shepp_logan_3d(n, slices)
    dense = dense_projector(n, n_det, theta, center)
    y = dense @ vol.reshape(slices, -1).T.astype(np.float64)  # (angles * n_det, slices)
    truth = _dense_sirt(dense, y, n, 20).T.reshape(slices, n, n)
    proj = y.reshape(len(theta), n_det, slices).transpose(0, 2, 1).astype(np.float32)
    monkeypatch.setattr(geometry, "_CHUNK_PAIRS", n * n * 5)  # 8 chunks of 5 angles
    for kept in (8, 3, 0):  # all chunks cached, three of them, none (streamed)
        geometry.clear_cache()
        monkeypatch.setattr(geometry, "CACHE_BYTES", kept * n * n * 5 * 8)
        rec = sirt(proj, theta, center=center, n=n, n_iter=20, device="cpu")
        # float32 against float64 over 20 iterations: 1e-5 of the image's range
        assert np.abs(rec - truth).max() < 1e-5 * truth.max()
