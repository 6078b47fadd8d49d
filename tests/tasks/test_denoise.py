import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError, ResultError
from napari_tomoml.models.store import LoadedModel, save_model
from napari_tomoml.models.tomogan import TomoGAN
from napari_tomoml.progress import Progress, run_to_end
from napari_tomoml.tasks.denoise import denoise, denoise_steps


class MiddleSlice(TomoGAN):
    """A TomoGAN that returns its middle input slice: any change in the output is the pipeline's."""

    def forward(self, x):
        return x[:, self.depth // 2 : self.depth // 2 + 1]


@pytest.fixture
def volume(rng):
    return (1000 + 50 * rng.standard_normal((5, 40, 36))).astype(np.float64)


def test_identity_model_round_trips_units_shape_and_dtype(volume):
    out, meta = run_to_end(denoise_steps(volume, LoadedModel(MiddleSlice(depth=3)), device="cpu"))
    assert out.shape == volume.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, volume, rtol=1e-5)  # normalisation applied and undone
    lo, hi = np.percentile(volume, [0.5, 99.5])
    assert meta["normalization"]["scale"] == pytest.approx(1 / (hi - lo))
    assert meta["card"]["architecture"] == "tomogan"


def test_saved_model_on_a_single_slice(tmp_path, volume):
    torch.manual_seed(0)
    path = save_model(TomoGAN(depth=3), tmp_path / "m")
    steps = denoise_steps(volume[0], path, device="cpu", batch=2)
    progress = []
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as stop:
            out, meta = stop.value
            break
    assert out.shape == volume[0].shape and out.dtype == np.float32
    assert all(isinstance(p, Progress) for p in progress) and progress[-1].done == progress[-1].total
    assert meta["model"] == str(path)


def test_plain_function_matches_generator(volume):
    model = LoadedModel(MiddleSlice(depth=1))
    np.testing.assert_array_equal(denoise(volume, model, device="cpu"), run_to_end(denoise_steps(volume, model, device="cpu"))[0])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(50), "2-D slice .* or a 3-D volume"),
        (np.zeros((2, 2, 20, 20)), "2-D slice .* or a 3-D volume"),
        (np.zeros((3, 4, 40)), "too small"),
        (np.array([[np.nan] * 10] * 10), "NaN"),
        (np.full((10, 10), "a"), "real numbers"),
    ],
)
def test_unusable_input_is_an_input_error(bad, message):
    with pytest.raises(InputError, match=message):
        denoise(bad, LoadedModel(MiddleSlice(depth=1)), device="cpu")


def test_lazy_hdf5_volume_is_read_slice_by_slice(tmp_path, volume):
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["rec"] = volume
    with h5py.File(tmp_path / "v.h5", "r") as f:
        out = denoise(f["rec"], LoadedModel(MiddleSlice(depth=5)), device="cpu")
    np.testing.assert_allclose(out, volume, rtol=1e-5)


def test_bundled_model_improves_a_low_dose_reconstruction():
    from napari_tomoml.models.store import bundled_models
    from napari_tomoml.training.data import phantom_slab, simulate_pair
    from napari_tomoml.training.metrics import psnr

    if "tomogan-lowdose" not in bundled_models():
        pytest.skip("bundled weights not trained yet")
    noisy, clean = simulate_pair(phantom_slab("foam", 64, 3, seed=99), i0=1e3, seed=7, device="cpu")
    out = denoise(noisy, device="cpu")
    assert psnr(out, clean) > psnr(noisy, clean) + 5


def test_denoising_into_an_opened_file_equals_the_in_memory_result(volume, tmp_path):
    """The CLI's bounded-memory path: each slice goes to the file as it is done."""
    from napari_tomoml.io.writers import open_volume

    model = LoadedModel(MiddleSlice(depth=3))
    plain, _ = run_to_end(denoise_steps(volume, model, device="cpu"))
    seen = []
    with open_volume(tmp_path / "d.npy", volume.shape) as sink:
        def out(shape, meta):
            seen.append(meta["task"])
            return sink

        result, _ = run_to_end(denoise_steps(volume, model, device="cpu", out=out))
    assert result is sink and seen == ["denoise"]
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), plain)


def test_a_model_that_makes_everything_nan_is_an_error(volume):
    class Broken(MiddleSlice):
        def forward(self, x):
            return x * float("nan")

    with pytest.raises(ResultError, match="entirely NaN/inf"):
        denoise(volume, LoadedModel(Broken(depth=1)), device="cpu")


def test_lower_precisions_against_fp32():
    pytest.importorskip("onnxruntime")
    from napari_tomoml.inference.precision import psnr
    from napari_tomoml.sim.phantom import random_ellipsoids

    vol = random_ellipsoids(96, 4, seed=4)
    vol = vol + np.random.default_rng(1).normal(0, 0.1, vol.shape).astype(np.float32)
    fp32, meta = run_to_end(denoise_steps(vol, device="cpu"))
    assert meta["precision"] == {"requested": "fp32", "used": "fp32"}
    int8, meta = run_to_end(denoise_steps(vol, device="cpu", precision="int8"))
    assert meta["precision"]["used"] == "int8" and meta["parameters"]["precision"] == "int8"
    # the PSNR measured on the calibration tiles is what the whole volume gets (measured ~50 dB)
    assert psnr(int8, fp32) >= 45 and abs(psnr(int8, fp32) - meta["precision"]["psnr_db"]) < 5
    assert denoise(vol, device="cpu", precision="auto").shape == vol.shape
    with pytest.raises(InputError, match="unknown precision 'fp16'"):
        denoise(vol, device="cpu", precision="fp16")
