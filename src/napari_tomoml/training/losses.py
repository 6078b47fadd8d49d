"""Losses for TomoGAN and other image-to-image models (torch, differentiable).

The critic is a Wasserstein critic with gradient penalty (Gulrajani et al., arXiv:1704.00028);
the generator's loss is a weighted sum of :func:`adversarial_loss`, MSE and
:class:`PerceptualLoss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss: mean D(fake) - mean D(real) (the critic minimises it).

    >>> float(critic_loss(torch.tensor([2.0]), torch.tensor([0.5])))
    -1.5
    """
    return fake_scores.mean() - real_scores.mean()


def adversarial_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator's Wasserstein loss: -mean D(G(x)).

    >>> float(adversarial_loss(torch.tensor([1.0, 3.0])))
    -2.0
    """
    return -fake_scores.mean()


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP penalty: mean (||grad D(x_hat)||_2 - 1)^2 at random mixes x_hat of real and fake.

    >>> critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    >>> gradient_penalty(critic, torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)).item() >= 0
    True
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device="cpu").to(real)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise mean squared error.

    >>> float(mse_loss(torch.ones(3), torch.zeros(3)))
    1.0
    """
    return F.mse_loss(prediction, target)


class PerceptualLoss(nn.Module):
    """MSE between feature maps of a frozen network (VGG19) of prediction and target.

    Gradients flow through the feature network into the prediction (and so into the
    generator); only the feature network's own weights are frozen. (The published TomoGAN code
    computed these features with ``predict()`` outside the gradient tape, so the term never
    trained the generator.)

    >>> from napari_tomoml.models.vgg import VGG19Features
    >>> loss = PerceptualLoss(VGG19Features("relu1_2"))
    >>> float(loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)))
    0.0
    """

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features.eval().requires_grad_(False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.features(target)
        return F.mse_loss(self.features(prediction), target_features)


# ---- segmentation ------------------------------------------------------------------------------
# The superres-tomo docs' binary losses ("Loss functions", 3.1-3.3), with p the target and p^ the
# predicted probability of the foreground:
#   WCE(p, p^) = -(beta p log p^ + (1 - p) log(1 - p^))
#   BCE(p, p^) = -(beta p log p^ + (1 - beta)(1 - p) log(1 - p^))
#   DL(p, p^)  = 1 - (2 p p^ + 1) / (p + p^ + 1)      (sums over pixels, smoothing 1)
# For K classes, channel 0 plays "negative" (1 - p) and channels 1..K-1 "positive" (p), which is
# the docs' formula exactly when K = 2. Pixels whose target is IGNORE (not annotated) count nowhere.

IGNORE = -1


def _log_probs_and_mask(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    if logits.ndim != target.ndim + 1 or logits.shape[2:] != target.shape[1:] or logits.shape[0] != target.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match: "
                         "need (batch, classes, ...) and (batch, ...)")
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    log_p = F.log_softmax(logits.float(), dim=1)
    picked = log_p.gather(1, safe.unsqueeze(1)).squeeze(1)  # log p^ of each pixel's true class
    return picked, safe, valid


def _mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # no annotated pixel in a batch: a zero loss that still has a graph
    return (values * valid).sum() / valid.sum().clamp(min=1)


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, beta: float = 1.0, ignore_index: int = IGNORE
) -> torch.Tensor:
    """Weighted cross-entropy: positives (classes >= 1) weighted by ``beta``, mean over annotated pixels.

    ``beta > 1`` counters a rare foreground (fewer false negatives), ``beta < 1`` biases against
    false positives. Hand check, one pixel with p^ = 0.8 of being foreground:

    >>> logits = torch.log(torch.tensor([[[0.2], [0.8]]]))            # (batch 1, 2 classes, 1 pixel)
    >>> round(float(weighted_cross_entropy(logits, torch.tensor([[1]]), beta=2.0)), 4)  # -2 log 0.8
    0.4463
    >>> round(float(weighted_cross_entropy(logits, torch.tensor([[0]]), beta=2.0)), 4)  # -log 0.2
    1.6094
    """
    picked, safe, valid = _log_probs_and_mask(logits, target, ignore_index)
    weight = torch.where(safe > 0, torch.full_like(picked, beta), torch.ones_like(picked))
    return _mean(-weight * picked, valid)


def balanced_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, beta: float = 0.5, ignore_index: int = IGNORE
) -> torch.Tensor:
    """Balanced cross-entropy: positives weighted by ``beta``, negatives (class 0) by ``1 - beta``.

    >>> logits = torch.log(torch.tensor([[[0.2], [0.8]]]))
    >>> round(float(balanced_cross_entropy(logits, torch.tensor([[1]]), beta=0.7)), 4)  # -0.7 log 0.8
    0.1562
    >>> round(float(balanced_cross_entropy(logits, torch.tensor([[0]]), beta=0.7)), 4)  # -0.3 log 0.2
    0.4828
    """
    picked, safe, valid = _log_probs_and_mask(logits, target, ignore_index)
    weight = torch.where(safe > 0, torch.full_like(picked, beta), torch.full_like(picked, 1.0 - beta))
    return _mean(-weight * picked, valid)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE, channels: list[int] | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum p p^ + 1) / (sum p + sum p^ + 1)`` per class, averaged.

    ``channels`` picks the classes averaged (default all); sums run over annotated pixels of the
    batch. Hand check, two pixels, foreground channel only: p = (1, 0), p^ = (0.8, 0.2):
    1 - (2 * 0.8 + 1) / (1 + 1.0 + 1) = 0.1333.

    >>> logits = torch.log(torch.tensor([[[0.2, 0.8], [0.8, 0.2]]]))    # (1, 2 classes, 2 pixels)
    >>> round(float(dice_loss(logits, torch.tensor([[1, 0]]), channels=[1])), 4)
    0.1333
    """
    _, safe, valid = _log_probs_and_mask(logits, target, ignore_index)
    prob = F.softmax(logits.float(), dim=1)
    onehot = F.one_hot(safe, logits.shape[1]).movedim(-1, 1).to(prob.dtype)
    mask = valid.unsqueeze(1).to(prob.dtype)
    dims = [0, *range(2, logits.ndim)]
    inter = (prob * onehot * mask).sum(dims)
    total = (prob * mask).sum(dims) + (onehot * mask).sum(dims)
    per_class = 1 - (2 * inter + smooth) / (total + smooth)
    if channels is not None:
        per_class = per_class[list(channels)]
    return per_class.mean()


def segmentation_loss(name: str, beta: float | None = None):
    """The loss called ``name``: "ce", "wce", "bce", "dice" or "ce+dice" (a sum), as a function of
    (logits, target). ``beta`` is the WCE/BCE weight (defaults 1.0 / 0.5).

    >>> f = segmentation_loss("ce+dice")
    >>> float(f(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))) > 0
    True
    """
    parts = {
        "ce": lambda lg, t: weighted_cross_entropy(lg, t, 1.0),
        "wce": lambda lg, t: weighted_cross_entropy(lg, t, 1.0 if beta is None else beta),
        "bce": lambda lg, t: balanced_cross_entropy(lg, t, 0.5 if beta is None else beta),
        "dice": dice_loss,
    }
    names = [n.strip().lower() for n in str(name).split("+")]
    unknown = [n for n in names if n not in parts]
    if unknown or not names:
        from ..errors import InputError

        raise InputError(f"loss {name!r}: use one of ce, wce, bce, dice or a sum such as 'ce+dice'")
    chosen = [parts[n] for n in names]
    return lambda logits, target: sum(f(logits, target) for f in chosen)
