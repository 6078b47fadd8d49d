"""PtychoNN as published: layer layout, output ranges, sizes, the phase-only variant, the model store."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from napari_tomoml.models.ptychonn import PtychoNN, flops_per_frame
from napari_tomoml.models.store import load_model, save_model


def test_published_layout():
    net = PtychoNN()
    convs = [m for m in net.encoder if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.encoder) == 3
    for decoder in (net.phase_decoder, net.amplitude_decoder):
        assert sum(isinstance(m, nn.Upsample) for m in decoder) == 3
        assert decoder[-2].out_channels == 1
    assert isinstance(net.amplitude_decoder[-1], nn.Sigmoid)
    # ≈ 0.8 GFLOP per 64² frame (the 0.5–0.7 GFLOP estimate counted one decoder less)
    assert 0.7e9 < flops_per_frame(net, 64) < 0.9e9
    assert flops_per_frame(PtychoNN(phase_only=True), 64) < 0.75 * flops_per_frame(net, 64)


def test_output_ranges_and_any_size_divisible_by_8():
    torch.manual_seed(0)
    net = PtychoNN(nconv=4).eval()
    with torch.no_grad():
        for size in (16, 40, 64):
            out = net(torch.rand(3, 1, size, size) * 1e4)
            assert out.shape == (3, 2, size, size)
            assert out[:, 0].abs().max() < math.pi and 0 < out[:, 1].min() and out[:, 1].max() < 1


def test_input_is_log1p_counts_times_the_stored_scale():
    torch.manual_seed(0)
    net = PtychoNN(nconv=4).eval()
    x = torch.rand(2, 1, 16, 16) * 100
    net.input_scale.fill_(0.5)
    with torch.no_grad():
        a = net(x)
        net.input_scale.fill_(1.0)
        b = net(torch.expm1(0.5 * torch.log1p(x)))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_store_round_trip_keeps_weights_scale_and_variant(tmp_path):
    torch.manual_seed(1)
    net = PtychoNN(nconv=4, phase_only=True)
    net.input_scale.fill_(0.01)
    path = save_model(net, tmp_path / "pnn", training={"size": 16})
    loaded = load_model(path)
    assert isinstance(loaded.module, PtychoNN) and loaded.module.phase_only
    assert loaded.card["architecture"] == "ptychonn"
    assert loaded.card["config"] == {"nconv": 4, "phase_only": True, "batchnorm": False}
    x = torch.rand(1, 1, 16, 16) * 1e3
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), net.eval()(x))


def test_batchnorm_variant_and_files_written_before_it(tmp_path):
    import json

    bn = PtychoNN(nconv=4, batchnorm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 6 + 2 * 6  # one per convolution but the last
    assert flops_per_frame(bn, 64) == flops_per_frame(PtychoNN(nconv=4), 64)  # batch norms fold into the convs
    # a model saved before the option existed has no "batchnorm" in its card: it loads as the plain network
    torch.manual_seed(1)
    path = save_model(PtychoNN(nconv=4), tmp_path / "old", training={"size": 16})
    card_path = tmp_path / "old.json"
    card = json.loads(card_path.read_text())
    del card["config"]["batchnorm"]
    card_path.write_text(json.dumps(card))
    loaded = load_model(path)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loaded.module.modules())


def test_odd_size_is_refused_by_the_task_layer():
    from napari_tomoml.errors import InputError
    from napari_tomoml.ptycho.nn import _check_size

    with pytest.raises(InputError, match="multiple of 8"):
        _check_size(60)
