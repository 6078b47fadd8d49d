import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError, TomomlError
from napari_tomoml.recon import fbp, project
from napari_tomoml.recon.filters import FILTERS, filter_response
from napari_tomoml.sim.phantom import shepp_logan_3d

N = 65  # odd: scikit-image's pixel grid and axis coincide with ours (see recon/geometry.py)


@pytest.fixture(scope="module")
def phantom_sino():
    img = shepp_logan_3d(N, 1)[0]
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    return img, theta, project(img, theta, device="cpu")


@pytest.mark.parametrize("name", ["ramp", "shepp-logan", "cosine", "hamming", "hann"])
def test_matches_scikit_image_iradon_with_the_same_filter(phantom_sino, name):
    from skimage.transform import iradon

    img, theta, sino = phantom_sino
    ours = fbp(sino, theta, filter_name=name, circle=True, device="cpu", method="backprojection")
    ref = iradon(sino.T, np.degrees(theta), filter_name=name, circle=True)
    assert ours.shape == (N, N) and ours.dtype == np.float32
    assert np.sqrt(np.mean((ours - ref) ** 2)) < 0.02 * (img.max() - img.min())


def test_half_full_and_uneven_turns_agree(phantom_sino):
    img, theta, sino = phantom_sino
    ref = fbp(sino, theta, device="cpu")
    full = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    assert np.sqrt(np.mean((fbp(project(img, full, device="cpu"), full, device="cpu") - ref) ** 2)) < 1e-3
    uneven = np.sort(np.random.default_rng(0).uniform(0, np.pi, 200))
    rec = fbp(project(img, uneven, device="cpu"), uneven, circle=True, device="cpu")
    assert np.sqrt(np.mean((rec - img) ** 2)) < np.sqrt(np.mean((ref - img) ** 2)) * 1.2
    assert rec.mean() == pytest.approx(img.mean(), rel=0.02)  # uneven weights keep the scale


def test_off_centre_axis_and_batches_and_torch(phantom_sino):
    img, theta, _ = phantom_sino
    vol = np.stack([img, img[::-1]])
    proj = project(vol, theta, center=30.25, device="cpu")
    rec = fbp(proj, theta, center=30.25, device="cpu", chunk=1)
    assert rec.shape == (2, N, N)
    assert np.sqrt(np.mean((rec - vol) ** 2)) < 0.1
    rec_t = fbp(torch.from_numpy(proj), theta, center=30.25, device="cpu")
    assert isinstance(rec_t, torch.Tensor)
    np.testing.assert_allclose(rec_t.numpy(), rec, atol=1e-5)


@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_reconstructs(phantom_sino, name):
    img, theta, sino = phantom_sino
    rec = fbp(sino, theta, filter_name=name, device="cpu", cutoff=0.8, circle=True)
    assert np.corrcoef(rec.ravel(), img.ravel())[0, 1] > 0.7
    assert rec.mean() == pytest.approx(img.mean(), rel=0.02)


def test_ramp_has_no_dc_offset():
    # the real-space ramp's DC term is small but not zero: a flat field is not lost
    assert filter_response("ramp", 128)[0] == pytest.approx(
        0.25 - 2 * sum(1 / (np.pi * k) ** 2 for k in range(1, 64, 2)), abs=1e-9
    )


def test_circle_mask(phantom_sino):
    _, theta, sino = phantom_sino
    rec = fbp(sino + 1.0, theta, circle=True, device="cpu")
    assert rec[0, 0] == 0 and rec[N // 2, N // 2] != 0


def test_astra_peer_agrees_where_installed(phantom_sino):
    pytest.importorskip("astra")
    img, theta, _ = phantom_sino
    proj = project(img, theta, center=31.0, device="cpu")
    ours = fbp(proj, theta, center=31.0, device="cpu", circle=True)
    peer = fbp(proj, theta, center=31.0, backend="astra", circle=True)
    assert np.sqrt(np.mean((peer - img) ** 2)) < 0.12
    assert np.sqrt(np.mean((ours - peer) ** 2)) < 0.05


def test_bad_arguments(phantom_sino):
    _, theta, sino = phantom_sino
    with pytest.raises(InputError, match="unknown filter"):
        fbp(sino, theta, filter_name="box")
    with pytest.raises(InputError, match="backend"):
        fbp(sino, theta, backend="matlab")
    with pytest.raises(InputError, match="method"):
        fbp(sino, theta, method="fourier")
    with pytest.raises(InputError, match="theta has 119"):
        fbp(sino, theta[:-1])
    with pytest.raises(InputError, match="cutoff"):
        fbp(sino, theta, cutoff=0)
    try:
        import tomopy  # noqa: F401
    except ImportError:
        with pytest.raises(TomomlError, match="tomopy"):
            fbp(sino, theta, backend="tomopy")


def test_a_one_off_slice_builds_no_matrices(phantom_sino):
    from napari_tomoml.recon.geometry import SparseProjector, make_geometry

    img, theta, sino = phantom_sino
    rec = fbp(sino, theta, center=32.75, device="cpu")  # a new centre, as a live preview asks
    geom = make_geometry(N, N, theta, 32.75)
    assert not SparseProjector(geom, torch.float32, torch.device("cpu")).cached()
    batched = fbp(np.stack([sino] * 20, axis=1), theta, center=32.75, device="cpu", chunk=10)
    np.testing.assert_allclose(batched[7], rec, atol=1e-5 * np.abs(rec).max())  # the matrices agree


def test_lazy_projections_are_read_by_batch_into_out_and_match_numpy(tmp_path):
    """Bounded memory: a dask scan is never made whole, and the volume goes straight to ``out``."""
    import dask.array as da

    from napari_tomoml.io.writers import open_volume
    from napari_tomoml.recon.fbp import fbp

    theta = np.linspace(0, np.pi, 48, endpoint=False)
    proj = np.random.default_rng(0).random((48, 6, 32)).astype(np.float32)
    plain = fbp(proj, theta, device="cpu", chunk=2)
    reads = []
    lazy = da.from_array(proj, chunks=(48, 2, 32)).map_blocks(lambda b: reads.append(b.shape[1]) or b, dtype=np.float32)
    with open_volume(tmp_path / "v.npy", (6, 32, 32)) as sink:
        assert fbp(lazy, theta, device="cpu", chunk=2, out=sink) is sink
    assert reads and max(reads) == 2
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), plain)
