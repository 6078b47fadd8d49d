"""PtychoNN training on the shared Trainer, prediction, ONNX export parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_tomoml as tm
from napari_tomoml.errors import InputError, ModelFileError
from napari_tomoml.models.ptychonn import PtychoNN
from napari_tomoml.models.store import LoadedModel, load_model, save_model
from napari_tomoml.ptycho import sim
from napari_tomoml.ptycho.nn import resize_stack


@pytest.fixture(scope="module")
def trainset():
    """Sparse smooth bumps on a flat background, 16² windows: learnable in a few hundred steps."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    img = np.zeros((96, 96))
    img[rng.integers(0, 96, 60), rng.integers(0, 96, 60)] = 1.0
    obj = sim.object_from_image(ndimage.gaussian_filter(img, 2.5))
    probe = sim.focused_probe(16, aperture=0.3, defocus=0.6, photons=1e5)
    pos = sim.raster_scan(obj.shape, 16, sim.probe_diameter(probe), overlap=0.85)
    pat = sim.simulate(obj, probe, pos, photons=1e5)
    lab = sim.patches(obj, pos, 16)
    return {"patterns": pat, "amplitude": np.abs(lab), "phase": np.angle(lab), "positions": pos}


@pytest.fixture(scope="module")
def trained(trainset):
    torch.manual_seed(0)
    s = trainset
    return tm.ptycho.train(s["patterns"], s["amplitude"], s["phase"], size=16, steps=TRAIN_STEPS, device="cpu",
                           nconv=8, batch=32, val_every=50)


TRAIN_STEPS = 120


@pytest.mark.slow
def test_training_learns_phase_and_amplitude(trainset, trained):
    s = trainset
    n_val = round(0.1 * len(s["patterns"]))
    amp, ph = tm.ptycho.predict(s["patterns"][-n_val:], model=trained, device="cpu")
    truth_ph, truth_amp = s["phase"][-n_val:], s["amplitude"][-n_val:]
    centre = (slice(None), slice(4, 12), slice(4, 12))  # where the probe is bright
    baseline = np.abs(truth_ph - np.median(s["phase"][:-n_val]))[centre].mean()
    err = np.abs(ph - truth_ph)[centre].mean()
    # a CPU-sized run (150 steps of a nconv=8 network): it beats the best constant guess on positions it
    # never saw; benchmarks/bench_ptycho.py measures a full training run against ePIE
    assert err < 0.95 * baseline, (err, baseline)
    # and far better than the same network untrained (same seed)
    torch.manual_seed(0)
    untrained = PtychoNN(nconv=8)
    untrained.input_scale.copy_(trained.module.input_scale)
    amp0, ph0 = tm.ptycho.predict(s["patterns"][-n_val:], model=untrained, device="cpu")
    loss = np.abs(ph - truth_ph).mean() + np.abs(amp - truth_amp).mean()
    loss0 = np.abs(ph0 - truth_ph).mean() + np.abs(amp0 - truth_amp).mean()
    assert loss < 0.5 * loss0, (loss, loss0)
    card = trained.card
    assert card["training"]["size"] == 16 and card["training"]["steps"] == TRAIN_STEPS
    assert card["metrics"]["val_loss"] > 0 and card["training"]["wall_time_s"] > 0


def test_predict_shapes_and_sizes(trainset, trained):
    s = trainset
    amp, ph = tm.ptycho.predict(s["patterns"][:5], model=trained, device="cpu")
    assert amp.shape == ph.shape == (5, 16, 16) and ph.dtype == np.float32
    # 32² frames binned 2x2 to the model's 16² give the same answer as pre-binned ones
    big = np.repeat(np.repeat(s["patterns"][:3], 2, axis=1), 2, axis=2) / 4
    _, ph_big = tm.ptycho.predict(big, model=trained, device="cpu")
    np.testing.assert_allclose(ph_big, ph[:3], atol=1e-5)


def test_batched_prediction_equals_one_at_a_time(trainset, trained):
    x = trainset["patterns"][:6]
    amp, ph = tm.ptycho.predict(x, model=trained, device="cpu", batch=256)
    amp1, ph1 = tm.ptycho.predict(x, model=trained, device="cpu", batch=1)
    np.testing.assert_allclose(ph1, ph, atol=1e-5)
    np.testing.assert_allclose(amp1, amp, atol=1e-5)


def test_saved_model_predicts_the_same(tmp_path, trainset, trained):
    path = save_model(trained.module, tmp_path / "pnn", **{k: trained.card[k] for k in ("training", "metrics", "normalization")})
    _, a = tm.ptycho.predict(trainset["patterns"][:4], model=trained, device="cpu")
    _, b = tm.ptycho.predict(trainset["patterns"][:4], model=path, device="cpu")
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_onnx_runtime_parity(tmp_path, trainset, trained):
    pytest.importorskip("onnxruntime")
    onnx_path = tm.ptycho.export_onnx(trained, tmp_path / "pnn.onnx")
    x = trainset["patterns"][:7]
    amp_t, ph_t = tm.ptycho.predict(x, model=trained, device="cpu")
    amp_o, ph_o = tm.ptycho.predict(x, model=onnx_path)
    assert np.abs(ph_o - ph_t).max() <= 1e-4 and np.abs(amp_o - amp_t).max() <= 1e-4
    # dynamic frame size: 32² input through the same export
    run = tm.ptycho.OnnxPredictor(onnx_path)
    big = np.random.default_rng(0).poisson(50, (2, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = trained.module(torch.from_numpy(big)).numpy()
    assert np.abs(run(big) - ref).max() <= 1e-4
    from napari_tomoml.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        tm.ptycho.export_onnx(trained, onnx_path)


def test_phase_only_variant_trains_and_predicts(trainset):
    s = trainset
    model = tm.ptycho.train(s["patterns"], None, s["phase"], size=16, steps=5, device="cpu", nconv=4, phase_only=True)
    amp, ph = tm.ptycho.predict(s["patterns"][:3], model=model, device="cpu")
    assert amp is None and ph.shape == (3, 16, 16)
    assert model.module.phase_only


def test_continue_training_from_a_model(trainset, trained):
    s = trainset
    before = {k: v.clone() for k, v in trained.module.state_dict().items()}
    again = tm.ptycho.train(s["patterns"], s["amplitude"], s["phase"], size=16, steps=3, device="cpu", model=trained)
    assert again.module is trained.module
    assert again.module.input_scale.item() == before["input_scale"].item()  # the scale stays the model's


def test_resize_stack_keeps_counts():
    a = np.random.default_rng(0).random((2, 24, 24)).astype(np.float32)
    assert resize_stack(a, 8, counts=True).sum() == pytest.approx(a.sum(), rel=1e-5)
    assert resize_stack(a, 16, counts=True).sum() == pytest.approx(a.sum(), rel=0.03)  # area interpolation
    assert resize_stack(a, 8).mean() == pytest.approx(a.mean(), rel=1e-5)


def test_bad_training_input(trainset):
    s = trainset
    with pytest.raises(InputError, match="match one to one"):
        tm.ptycho.train(s["patterns"][:-1], s["amplitude"], s["phase"], size=16, steps=1)
    with pytest.raises(InputError, match="square"):
        tm.ptycho.train(s["patterns"][:, :, :12], s["amplitude"], s["phase"], size=16, steps=1)
    bad = s["patterns"].copy()
    bad[3, 2, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        tm.ptycho.train(bad, s["amplitude"], s["phase"], size=16, steps=1)
    with pytest.raises(InputError, match="amplitude"):
        tm.ptycho.train(s["patterns"], None, s["phase"], size=16, steps=1)
    with pytest.raises(InputError, match="multiple of 8"):
        tm.ptycho.train(s["patterns"], s["amplitude"], s["phase"], size=12, steps=1)
    with pytest.raises(InputError, match="real"):
        tm.ptycho.train(s["patterns"], s["amplitude"], s["phase"] * 1j, size=16, steps=1)


def test_predict_refuses_other_models_and_bad_frames(tmp_path, trained):
    from napari_tomoml.models.tomogan import TomoGAN

    path = save_model(TomoGAN(depth=1), tmp_path / "tg")
    with pytest.raises(ModelFileError, match="not PtychoNN"):
        tm.ptycho.predict(np.ones((1, 16, 16)), model=path, device="cpu")
    with pytest.raises(InputError, match="NaN"):
        tm.ptycho.predict(np.full((1, 16, 16), np.nan), model=trained, device="cpu")
    with pytest.raises(ModelFileError):
        tm.ptycho.predict(np.ones((1, 16, 16)), model=tmp_path / "missing.onnx")
    assert load_model(trained).module is trained.module


def test_illuminated_loss_ignores_the_dark_part_of_each_window(trainset):
    from napari_tomoml.training.ptycho import PtychoNNTask

    s = trainset
    radius = 0.6 * sim.probe_diameter(sim.focused_probe(16, aperture=0.3, defocus=0.6))
    weight = tm.ptycho.illumination(16, radius)
    torch.manual_seed(0)
    x = torch.from_numpy(resize_stack(s["patterns"][:4], 16, counts=True)[:, None])
    y = torch.from_numpy(np.stack([s["phase"][:4], s["amplitude"][:4]], axis=1))
    y_dark = y.clone()
    y_dark[:, :, torch.from_numpy(weight == 0)] = 3.0  # labels changed only where the probe is dark
    losses = []
    for target in (y, y_dark):
        torch.manual_seed(0)
        task = PtychoNNTask(PtychoNN(nconv=4), weight=weight, schedule="cosine")
        losses.append(task.train_step(lambda t=target: (x, t), torch.Generator(), 0)["l1"])
    assert losses[0] == losses[1] and losses[0] > 0
    # a trained model records its lit area; its patches are stitched with the same weights
    model = tm.ptycho.train(s["patterns"], s["amplitude"], s["phase"], size=16, steps=3, device="cpu", nconv=4,
                            illuminated_radius=radius, schedule="cosine")
    assert model.card["training"]["illuminated_radius"] == pytest.approx(radius)
    assert model.card["training"]["schedule"] == "cosine" and "phase_mae" in model.card["metrics"]
    np.testing.assert_array_equal(tm.ptycho.stitch_weights(model), weight)
    assert tm.ptycho.stitch_weights(model, 32).shape == (32, 32)
    assert tm.ptycho.stitch_weights(PtychoNN()) == "taper"
    with pytest.raises(InputError, match="schedule"):
        tm.ptycho.train(s["patterns"], s["amplitude"], s["phase"], size=16, steps=1, schedule="linear")


def test_batchnorm_variant_saves_exports_and_predicts_the_same(tmp_path, trainset):
    s = trainset
    model = tm.ptycho.train(s["patterns"], s["amplitude"], s["phase"], size=16, steps=4, device="cpu", nconv=4,
                            batchnorm=True)
    assert model.module.config["batchnorm"] and not model.module.training
    path = save_model(model.module, tmp_path / "bn", **{k: model.card[k] for k in ("training", "metrics", "normalization")})
    x = s["patterns"][:5]
    amp, ph = tm.ptycho.predict(x, model=model, device="cpu")
    amp2, ph2 = tm.ptycho.predict(x, model=path, device="cpu")
    np.testing.assert_allclose(ph2, ph, atol=1e-5)
    pytest.importorskip("onnxruntime")
    amp3, ph3 = tm.ptycho.predict(x, model=tm.ptycho.export_onnx(path, tmp_path / "bn.onnx"))
    assert np.abs(ph3 - ph).max() <= 1e-4 and np.abs(amp3 - amp).max() <= 1e-4


def test_inference_copy_folds_batchnorm_and_leaves_the_model_alone():
    from napari_tomoml.ptycho.nn import inference_copy

    torch.manual_seed(0)
    net = PtychoNN(nconv=4, batchnorm=True)
    for m in net.modules():  # running statistics as after training, not the identity of a fresh network
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    fast = inference_copy(LoadedModel(net)).module
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    x = torch.rand(3, 1, 32, 32) * 1e3
    with torch.no_grad():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["ptychonn-sim", "ptychonn-sim-light"])
def test_bundled_model_reproduces_its_held_out_scores(name):
    """The bundled models on the held-out scan of scripts/train_ptychonn.py (an object they never saw): the
    phase scores in their cards are what they give, and far better than the best constant guess."""
    model = load_model(name)
    held = model.card["metrics"]["heldout"]
    obj = sim.random_object((160, 320), seed=0)
    probe = sim.focused_probe(32, aperture=0.2, defocus=0.5, photons=1e6)
    d = sim.probe_diameter(probe)
    pos = sim.spiral_scan((160, 320 - 240), 32, d, overlap=0.6) + [0, 240]
    patterns = sim.simulate(obj, probe, pos, photons=1e6, seed=2)
    y0, y1, x0, x1 = held["region"]
    region = (slice(y0, y1), slice(x0, x1))
    _, ph = tm.ptycho.predict(patterns, model=model, device="cpu")
    stitched = tm.ptycho.stitch(ph, pos, obj.shape, weights=tm.ptycho.stitch_weights(model))
    scores = tm.ptycho.phase_scores(stitched, np.angle(obj), region)
    assert len(pos) == held["positions"]
    for key in ("ssim", "psnr", "mae"):
        assert scores[key] == pytest.approx(held["scores"]["ptychonn"][key], rel=0.02, abs=2e-3), key
    flat = tm.ptycho.phase_scores(np.full(obj.shape, np.median(np.angle(obj)[region])), np.angle(obj), region)
    assert scores["mae"] < 0.6 * flat["mae"] and scores["ssim"] > 0.5, (scores, flat)
