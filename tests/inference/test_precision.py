import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError
from napari_tomoml.inference.precision import (
    autocast,
    native_bf16,
    onnxruntime_available,
    psnr,
    resolve_precision,
)


def test_auto_follows_the_capability_probe():
    cpu = torch.device("cpu")
    expected = "bf16" if native_bf16(cpu) else ("int8" if onnxruntime_available() else "fp32")
    assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp8", cpu)
    with pytest.raises(InputError, match="int8 inference runs on the CPU"):
        resolve_precision("int8", torch.device("meta"))


def test_int8_without_onnxruntime_is_a_clear_error(monkeypatch):
    from napari_tomoml.inference import precision

    monkeypatch.setattr(precision, "onnxruntime_available", lambda: False)
    with pytest.raises(InputError, match="pip install"):
        resolve_precision("int8", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")


def test_bundled_tomogan_in_bf16_against_fp32():
    from napari_tomoml.models.store import load_model
    from napari_tomoml.sim.phantom import random_ellipsoids

    net = load_model("tomogan-lowdose").module.eval()
    vol = random_ellipsoids(64, 3, seed=2)
    noisy = vol + np.random.default_rng(0).normal(0, 0.1, vol.shape).astype(np.float32)
    x = torch.from_numpy(noisy[None])  # the three adjacent slices as channels
    cpu = torch.device("cpu")
    with torch.inference_mode():
        fp32 = net(x).numpy()
        with autocast("bf16", cpu):
            bf16 = net(x).float().numpy()
        with autocast("fp32", cpu):
            same = net(x).numpy()
    np.testing.assert_array_equal(same, fp32)
    # bf16 keeps 8 bits of mantissa; measured 63 dB here, the issue asks >= 45 dB against fp32
    assert 45 <= psnr(bf16, fp32) < 100


def test_the_registry_offers_every_precision():
    from napari_tomoml.inference.precision import PRECISIONS
    from napari_tomoml.tasks.registry import get_task

    for task in ("denoise", "segment"):
        assert set(get_task(task).param("precision").choices) == set(PRECISIONS)
