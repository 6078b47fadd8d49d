"""Segmentation losses: the superres-tomo formulas against hand-computed values, and the ignored label."""

import math

import pytest
import torch
import torch.nn.functional as F

from napari_tomoml.errors import InputError
from napari_tomoml.training.losses import (
    IGNORE,
    balanced_cross_entropy,
    dice_loss,
    segmentation_loss,
    weighted_cross_entropy,
)


def _logits(probs):
    """(classes, pixels) probabilities -> (1, classes, pixels) logits whose softmax gives them back."""
    return torch.log(torch.tensor(probs, dtype=torch.float32))[None]


# three pixels: p^ (foreground) = 0.9, 0.3, 0.6; targets 1, 0, 1
P = [[0.1, 0.7, 0.4], [0.9, 0.3, 0.6]]
T = torch.tensor([[1, 0, 1]])


def test_weighted_cross_entropy_by_hand():
    beta = 3.0
    # -(beta p log p^ + (1 - p) log(1 - p^)) per pixel, averaged
    expected = (-beta * math.log(0.9) - math.log(0.7) - beta * math.log(0.6)) / 3
    assert float(weighted_cross_entropy(_logits(P), T, beta)) == pytest.approx(expected, rel=1e-6)


def test_balanced_cross_entropy_by_hand():
    beta = 0.8
    expected = (-beta * math.log(0.9) - (1 - beta) * math.log(0.7) - beta * math.log(0.6)) / 3
    assert float(balanced_cross_entropy(_logits(P), T, beta)) == pytest.approx(expected, rel=1e-6)


def test_dice_loss_by_hand():
    # foreground: sum p p^ = 0.9 + 0.6, sum p = 2, sum p^ = 1.8
    expected_fg = 1 - (2 * 1.5 + 1) / (2 + 1.8 + 1)
    assert float(dice_loss(_logits(P), T, channels=[1])) == pytest.approx(expected_fg, rel=1e-6)
    # background: sum p p^ = 0.7, sum p = 1, sum p^ = 1.2; default averages both classes
    expected_bg = 1 - (2 * 0.7 + 1) / (1 + 1.2 + 1)
    assert float(dice_loss(_logits(P), T)) == pytest.approx((expected_fg + expected_bg) / 2, rel=1e-6)


def test_three_classes_by_hand():
    probs = [[0.2, 0.5], [0.5, 0.25], [0.3, 0.25]]  # 3 classes, 2 pixels
    target = torch.tensor([[2, 0]])
    # class 2 is a positive (weight beta), class 0 the negative
    expected = (-2.0 * math.log(0.3) - math.log(0.5)) / 2
    assert float(weighted_cross_entropy(_logits(probs), target, 2.0)) == pytest.approx(expected, rel=1e-6)


def test_beta_one_is_plain_cross_entropy(rng):
    logits = torch.from_numpy(rng.normal(size=(2, 4, 8, 8)).astype("float32"))
    target = torch.from_numpy(rng.integers(-1, 4, (2, 8, 8)))
    plain = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert float(weighted_cross_entropy(logits, target, 1.0)) == pytest.approx(float(plain), rel=1e-5)
    assert float(balanced_cross_entropy(logits, target, 0.5)) == pytest.approx(float(plain) / 2, rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "wce", "bce", "dice", "ce+dice"])
def test_ignored_pixels_count_nowhere(rng, name):
    loss = segmentation_loss(name, beta=2.0)
    logits = torch.from_numpy(rng.normal(size=(1, 3, 6, 6)).astype("float32")).requires_grad_(True)
    target = torch.from_numpy(rng.integers(0, 3, (1, 6, 6)))
    target[0, :3] = IGNORE
    value = loss(logits, target)
    value.backward()
    assert torch.all(logits.grad[0, :, :3] == 0) and torch.any(logits.grad[0, :, 3:] != 0)
    changed = logits.detach().clone()
    changed[0, :, :3] = torch.from_numpy(rng.normal(size=(3, 3, 6)).astype("float32")) * 10
    assert float(loss(changed, target)) == pytest.approx(value.item(), rel=1e-6)


def test_nothing_annotated_gives_a_finite_zero():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), IGNORE)
    value = segmentation_loss("ce")(logits, target)
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_sum_and_bad_names():
    logits, target = torch.randn(1, 2, 4, 4), torch.randint(0, 2, (1, 4, 4))
    both = segmentation_loss("ce+dice")(logits, target)
    assert float(both) == pytest.approx(float(weighted_cross_entropy(logits, target) + dice_loss(logits, target)))
    with pytest.raises(InputError, match="loss 'focal'"):
        segmentation_loss("focal")
    with pytest.raises(ValueError, match="do not match"):
        dice_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 5, 4, dtype=torch.long))
