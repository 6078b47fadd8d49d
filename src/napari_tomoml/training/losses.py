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
