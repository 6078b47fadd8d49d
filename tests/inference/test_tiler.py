"""The seamless tiler: tiled prediction equals the whole-image prediction for every model."""

import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError
from napari_tomoml.inference.runner import torch_predictor
from napari_tomoml.inference.tiler import (
    MAX_AUTO_TILE,
    Tiler,
    adjacent_indices,
    auto_tile,
    predict_tiled_steps,
    tile_starts,
)
from napari_tomoml.models.tomogan import TomoGAN
from napari_tomoml.models.unet import UNet
from napari_tomoml.sim.segmentation import segmentation_image


def _run(images, predict, **kw):
    return dict(r for step in predict_tiled_steps(images, predict, **kw) for r in step)


@pytest.mark.parametrize("shape, tile, overlap", [((70, 45), 32, 8), ((20, 30), 64, 16), ((64, 64), 64, 8)])
def test_identity_model_gives_back_the_image(rng, shape, tile, overlap):
    images = [rng.random((3, *shape), dtype=np.float32) for _ in range(3)]
    out = _run(images, lambda b: b[:, 1:2], tile=tile, overlap=overlap, batch=5)
    assert sorted(out) == [0, 1, 2]
    for i, image in enumerate(images):
        np.testing.assert_array_equal(out[i], image[1])


@pytest.mark.parametrize("height, width, tile, margin, multiple", [
    (1000, 700, 512, 65, 8), (97, 131, 64, 9, 4), (300, 40, 96, 20, 8), (50, 50, 512, 57, 8), (257, 513, 128, 0, 1),
])
def test_kept_parts_cover_the_image_once_away_from_inner_edges(height, width, tile, margin, multiple):
    t = Tiler(height, width, tile=tile, overlap=0, margin=margin, multiple=multiple)
    count = np.zeros((height, width), int)
    for win, keep, crop in zip(t.windows, t.keep, t.crop):
        count[keep] += 1
        for axis, (w, k, c) in enumerate(zip(win, keep, crop)):
            assert w.start % multiple == 0 and w.stop - w.start == t.tile_shape[axis]
            assert k.start - w.start == c.start and k.stop - k.start == c.stop - c.start
            # a kept pixel is a full margin away from every edge that is not the image's own edge
            if w.start > 0:
                assert k.start >= w.start + t.margin
            if w.stop < t.padded_shape[axis]:
                assert k.stop <= w.stop - t.margin
    assert np.all(count == 1)


def test_multichannel_output_and_shape_checks(rng):
    images = [rng.random((1, 40, 50), dtype=np.float32)]
    out = _run(images, lambda b: np.concatenate([b, 2 * b, 3 * b], 1), tile=32, overlap=8)[0]
    assert out.shape == (3, 40, 50)
    np.testing.assert_array_equal(out[2], 3 * images[0][0])
    with pytest.raises(InputError, match="share one size"):
        _run([np.zeros((1, 8, 8), np.float32), np.zeros((1, 9, 8), np.float32)], lambda b: b, tile=8, overlap=0)
    with pytest.raises(InputError, match="too small for this model"):
        Tiler(1000, 1000, tile=128, margin=65, multiple=8)


def test_tiles_cover_with_overlap():
    starts = tile_starts(1000, 256, 32)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 32 for a, b in zip(starts, starts[1:]))
    assert all(s % 8 == 0 for s in tile_starts(1024, 256, 64, multiple=8))
    assert Tiler(10, 10, tile=512).tile_shape == (10, 10)


def test_auto_tile_follows_memory():
    assert auto_tile(640, batch=4, available=2**40) == MAX_AUTO_TILE
    small = auto_tile(640, batch=4, available=2**28, multiple=8)
    assert 128 <= small < 512 and small % 8 == 0
    assert 4 * small**2 * 640 <= 0.25 * 2**28


def _randomise_batchnorm(net):
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return net.eval()


@pytest.mark.parametrize("make, channels", [(lambda: TomoGAN(depth=3), 3), (lambda: UNet(classes=3), 1)])
def test_declared_receptive_field_bounds_the_real_one(make, channels):
    torch.manual_seed(0)
    net = _randomise_batchnorm(make())
    x = torch.rand(1, channels, 192, 192, requires_grad=True)
    for p in (96, 99, 101):  # aligned and unaligned with the pooling grid
        x.grad = None
        net(x)[0, :, p, p].sum().backward()
        ys, xs = torch.nonzero(x.grad[0].abs().sum(0) > 0, as_tuple=True)
        reach = max(p - int(ys.min()), int(ys.max()) - p, p - int(xs.min()), int(xs.max()) - p)
        assert reach <= net.receptive_field
        assert reach >= net.receptive_field * 0.7  # the bound is not a wild over-estimate


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", [("unet", (1100, 1300)), ("tomogan", (1088, 1100))])
def test_tiled_equals_whole_at_the_default_tile(name, shape):
    # the default tile (from free memory, at most MAX_AUTO_TILE) cuts this image through its objects
    torch.manual_seed(0)
    net, channels = (UNet(classes=3), 1) if name == "unet" else (TomoGAN(depth=3), 3)
    _randomise_batchnorm(net)
    image, _ = segmentation_image(shape, "mixed", seed=3)
    x = np.repeat(image[None], channels, 0)
    predict = torch_predictor(net, torch.device("cpu"))
    whole = predict(x[None])[0]
    whole = whole[0] if whole.shape[0] == 1 else whole
    tiled = _run([x], predict, tile=None)[0]
    tiler = Tiler(*shape, tile=auto_tile(predict.bytes_per_pixel, batch=4, multiple=net.size_multiple),
                  margin=net.receptive_field, multiple=net.size_multiple)
    assert tiler.n_tiles >= 4
    assert np.abs(tiled - whole).max() / np.ptp(whole) <= 1e-4


def test_adjacent_indices_mirror_at_ends():
    assert adjacent_indices(9, 10, 5).tolist() == [7, 8, 9, 8, 7]
    assert adjacent_indices(4, 10, 3).tolist() == [3, 4, 5]
    assert len(adjacent_indices(1, 2, 7)) == 7
