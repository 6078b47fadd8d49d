"""Patch sampling and U-Net training on the shared Trainer."""

import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.progress import run_to_end
from napari_tomoml.sim.segmentation import annotation_strokes, segmentation_image
from napari_tomoml.training.losses import IGNORE
from napari_tomoml.training.segmentation import LabelledSlices, class_values, dice_scores, train_unet_steps


def test_class_values_and_their_errors():
    lab = [np.array([[0, 1], [2, 0]])]
    assert class_values(lab, None, False) == [0, 1, 2]
    assert class_values(lab, 4, False) == [0, 1, 2, 3]
    assert class_values(lab, None, True) == [1, 2]
    assert class_values(lab, [2, 1], True) == [2, 1]
    with pytest.raises(InputError, match=r"outside the classes \[0, 1\]"):
        class_values(lab, 2, False)
    with pytest.raises(InputError, match="no annotated pixel"):
        class_values([np.zeros((4, 4), int)], None, True)
    with pytest.raises(InputError, match="only class 1 is annotated"):
        class_values([np.array([[0, 1]])], 2, True)
    with pytest.raises(InputError, match="0 or positive"):
        class_values([np.array([[-1, 1]])], None, False)
    with pytest.raises(InputError, match="cannot be a class"):
        class_values(lab, [0, 1, 2], True)


@pytest.mark.parametrize("image, labels, kw, message", [
    (np.zeros((32, 32)), np.zeros((32, 31), np.uint8), {}, "must match"),
    (np.zeros((32, 32)), np.eye(32, dtype=np.uint8), {"patch": 64}, "patch 64 px is larger"),
    (np.full((32, 32), np.nan), np.eye(32, dtype=np.uint8), {"patch": 16}, "NaN"),
    (np.zeros((32, 32)), np.eye(32) * 0.5, {"patch": 16}, "whole numbers"),
    (np.zeros((32, 32)), np.eye(32, dtype=np.uint8), {"patch": 16, "patch_range": [4]}, "patch_range"),
    ([np.zeros((32, 32))] * 2, [np.eye(32, dtype=np.uint8)], {"patch": 16}, "2 image"),
])
def test_bad_training_input_is_a_clear_error(image, labels, kw, message):
    with pytest.raises(InputError, match=message):
        LabelledSlices(image, labels, **kw)


def test_patches_keep_image_and_labels_aligned_on_a_non_square_image(rng):
    # image == labels: any x/y mix-up or batch averaging (the seed generator's bugs) would show
    labels = (rng.random((96, 160)) > 0.7).astype(np.uint8)
    data = LabelledSlices(labels.astype(np.float32), labels, patch=32, val_fraction=0)
    for _ in range(20):
        x, y = data.sample_batch(rng, batch=4, augment=False)
        np.testing.assert_array_equal(x[:, 0] > 0.5, y == 1)
        x, y = data.sample_batch(rng, batch=4)  # flips/rotations move both; intensity jitter is mild
        np.testing.assert_array_equal(x[:, 0] > 0.5, y == 1)


def test_sampling_is_class_balanced(rng):
    labels = np.zeros((256, 256), np.uint8)
    labels[100:105, 50:55] = 1  # 25 of 65536 pixels
    data = LabelledSlices(rng.random((256, 256)), labels, patch=32, val_fraction=0)
    _, y = data.sample_batch(rng, batch=200)
    with_rare = np.mean([(t == 1).any() for t in y])
    assert 0.35 < with_rare < 0.75  # about half the patches, not 0.04 %


def test_sparse_patches_centre_on_annotations_and_ignore_the_rest(rng):
    _, mask = segmentation_image((128, 128), "pores", seed=1)
    strokes = annotation_strokes(mask, 0.02, seed=1)
    data = LabelledSlices(rng.random((128, 128)), strokes, sparse=True, patch=32, val_fraction=0)
    assert data.values == [1, 2]
    _, y = data.sample_batch(rng, batch=50)
    assert all((t != IGNORE).any() for t in y)
    assert np.mean(y == IGNORE) > 0.8


def test_patch_range_restricts_training_to_those_cells(rng):
    # 4 x 4 grid of 16 px cells, each filled with its own number: patches must come from cells 5 and 10
    cells = np.kron(np.arange(16).reshape(4, 4), np.ones((16, 16))).astype(np.float32)
    labels = (cells % 2).astype(np.uint8)
    data = LabelledSlices(cells, labels, patch=16, patch_range=[5, 10],
                          normalization={"kind": "affine", "offset": 0.0, "scale": 1.0})
    assert data.validation_kind.startswith("training pixels")
    x, _ = data.sample_batch(rng, batch=40, augment=False)
    seen = {float(np.unique(p)[0]) for p in x[:, 0]}
    assert seen == {5.0, 10.0} and all(len(np.unique(p)) == 1 for p in x[:, 0])


def test_validation_strip_is_held_out(rng):
    mask = np.kron((np.indices((16, 16)).sum(0) % 2), np.ones((8, 8), np.uint8))  # 8 px checkerboard
    data = LabelledSlices(rng.random((128, 128)), mask, patch=32, val_fraction=0.25)
    assert data.validation_kind.startswith("held-out") and data.train_rows == [96]
    assert all(c[:, 1].max() < 96 for c in data.coords)
    (x, y), = data.validation_pairs()
    assert x.shape == (1, 1, 32, 128) and y.shape == (1, 32, 128)


def test_dice_scores():
    assert dice_scores(np.array([1, 1, 0]), np.array([1, 1, 0]), 2) == [1.0, 1.0]
    assert dice_scores(np.array([1, 0]), np.array([0, IGNORE]), 3) == [0.0, 0.0, 1.0]


def _easy_data():
    image, mask = segmentation_image((128, 128), "pores", noise=0.05, seed=0)
    return LabelledSlices(image, mask, patch=48, val_fraction=0.25)


@pytest.mark.slow
def test_training_learns_validates_dice_and_is_reproducible():
    data = _easy_data()
    kw = dict(steps=40, batch=4, depth=2, width=8, val_every=10, device="cpu", lr=5e-3)
    net, result = run_to_end(train_unet_steps(data, **kw))
    assert [h["step"] for h in result.history] == [10, 20, 30, 40]
    assert {"dice", "dice_background", "dice_class 1", "val_loss"} <= set(result.history[0])
    best = max(h["dice"] for h in result.history)
    assert best > 0.8 and result.best == pytest.approx(1 - best)
    net2, _ = run_to_end(train_unet_steps(data, **{**kw, "steps": 3}))
    net3, _ = run_to_end(train_unet_steps(data, **{**kw, "steps": 3}))
    for a, b in zip(net2.state_dict().values(), net3.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())


def test_stop_keeps_the_best_weights():
    net, result = run_to_end(train_unet_steps(_easy_data(), steps=1000, batch=2, depth=1, width=4, val_every=2,
                                              device="cpu", stop=_set_after(4)))
    assert result.step == 5 and result.cancelled and result.best_step in (2, 4)
    assert not net.training


class _set_after:
    """An Event that sets itself once it has been asked ``n`` times (stops training at step n + 1)."""

    def __init__(self, n):
        self.n = n

    def is_set(self):
        self.n -= 1
        return self.n < 0
