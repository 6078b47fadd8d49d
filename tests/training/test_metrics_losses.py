import pytest
import torch

from napari_tomoml.models.tomogan import TomoGAN, TomoGANCritic
from napari_tomoml.models.vgg import VGG19Features
from napari_tomoml.training.losses import PerceptualLoss, adversarial_loss, critic_loss, gradient_penalty
from napari_tomoml.training.metrics import psnr, ssim
from napari_tomoml.training.tomogan import TomoGANLossConfig, TomoGANTask


def test_psnr_and_ssim(rng):
    target = rng.random((2, 16, 16))
    assert psnr(target + 0.1, target, data_range=1.0) == pytest.approx(20.0)
    assert psnr(target, target) == float("inf")
    assert ssim(target, target) == pytest.approx(1.0)
    assert ssim(target + rng.normal(0, 0.3, target.shape), target) < 0.8


def test_wasserstein_losses_and_penalty():
    assert float(critic_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0]))) == -2.0
    assert float(adversarial_loss(torch.tensor([4.0]))) == -4.0
    torch.manual_seed(0)
    critic = TomoGANCritic(crop=16)
    gp = gradient_penalty(critic, torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16))
    gp.backward()
    assert gp.item() > 0 and critic.dense.weight.grad is not None


def test_perceptual_term_alone_trains_the_generator():
    # random VGG: the point is the gradient path, not the features
    torch.manual_seed(0)
    generator = TomoGAN(depth=3)
    loss = PerceptualLoss(VGG19Features("relu2_2"))
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
    loss(generator(x), y).backward()
    grads = [p.grad for p in generator.parameters()]
    assert all(g is not None for g in grads)
    assert all(float(g.abs().sum()) > 0 for g in grads)
    assert not any(p.requires_grad for p in loss.features.parameters())


def test_generator_step_uses_perceptual_term_when_vgg_given():
    torch.manual_seed(0)
    cfg = TomoGANLossConfig(lambda_mse=0.0, lambda_adv=0.0, lambda_vgg=1.0)
    task = TomoGANTask(TomoGAN(depth=1), crop=16, vgg=VGG19Features("relu1_2"), losses=cfg)
    before = task.generator.stem.weight.detach().clone()
    batch = (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16))
    losses = task.train_step(lambda: batch, torch.Generator(), 0)
    assert losses["vgg"] > 0 and not torch.equal(before, task.generator.stem.weight)


def test_missing_vgg_turns_perceptual_term_off_with_a_warning():
    with pytest.warns(UserWarning, match="perceptual .* off"):
        task = TomoGANTask(TomoGAN(depth=1), crop=16, losses=TomoGANLossConfig(lambda_vgg=1.0))
    assert task.perceptual is None
