import numpy as np
import pytest
import torch

from napari_tomoml.inference.precision import psnr
from napari_tomoml.inference.runner import calibration_tiles, make_predictor, onnx_int8_predictor
from napari_tomoml.models.store import load_model
from napari_tomoml.sim.phantom import random_ellipsoids

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tomogan_inputs():
    vol = random_ellipsoids(128, 5, seed=3)
    noisy = vol + np.random.default_rng(0).normal(0, 0.1, vol.shape).astype(np.float32)
    return noisy[None, 0:3], noisy[None, 2:5]  # calibration window, held-out window


def test_int8_tomogan_keeps_45_db_against_fp32_on_unseen_data(tomogan_inputs, tmp_path, monkeypatch):
    calibration, test = tomogan_inputs
    net = load_model("tomogan-lowdose").module.eval()
    with torch.inference_mode():
        fp32 = net(torch.from_numpy(test)).numpy()
    monkeypatch.chdir(tmp_path)  # the quantiser's temporary files must not land where the user works
    int8 = onnx_int8_predictor(net, calibration)
    assert list(tmp_path.iterdir()) == []
    assert int8.receptive_field == net.receptive_field and int8.size_multiple == net.size_multiple
    out = int8(test)
    assert out.shape == fp32.shape and out.dtype == np.float32
    # measured 50-52 dB on this data (AVX2 CPU); the bound is 45 dB
    assert 45 <= psnr(out, fp32) < 100
    assert int8(calibration[:, :, :64, :64]).shape == (1, 1, 64, 64)  # any tile size runs


def test_auto_keeps_a_lower_precision_only_above_the_bound(monkeypatch, tomogan_inputs):
    from napari_tomoml.inference import runner

    calibration, _ = tomogan_inputs
    net = load_model("tomogan-lowdose").module
    cpu = torch.device("cpu")
    predict, report = make_predictor(net, cpu, "auto", lambda: calibration)
    assert report["requested"] == "auto" and report["used"] in ("int8", "bf16")
    assert report["psnr_db"] >= 45 and "fallback" not in report
    monkeypatch.setattr(runner, "MIN_PSNR_DB", 200.0)  # no lower precision is that exact
    predict, report = make_predictor(net, cpu, "auto", lambda: calibration)
    assert report["used"] == "fp32" and "dB" in report["fallback"]
    with torch.inference_mode():
        np.testing.assert_array_equal(predict(calibration), net(torch.from_numpy(calibration)).numpy())
    _, forced = make_predictor(net, cpu, "int8", lambda: calibration)  # forced: used, with its PSNR
    assert forced["used"] == "int8" and forced["psnr_db"] >= 45


def test_calibration_tiles_spread_over_each_image():
    image = np.arange(3 * 40 * 100, dtype=np.float32).reshape(3, 40, 100)
    tiles = calibration_tiles([image, image + 1], side=32, multiple=8)
    assert tiles.shape == (4, 3, 32, 32)
    assert tiles[0, 0, 0, 0] != tiles[1, 0, 0, 0]  # two places in one image
    assert calibration_tiles([image], side=64, multiple=8).shape == (2, 3, 40, 40)  # shrunk to fit
