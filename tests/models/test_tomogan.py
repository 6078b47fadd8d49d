import pytest
import torch

from napari_tomoml.models.tomogan import TomoGAN, TomoGANCritic, pad_to_multiple


def test_generator_keeps_any_size_and_outputs_one_slice():
    net = TomoGAN(depth=5)
    assert net(torch.zeros(2, 5, 21, 34)).shape == (2, 1, 21, 34)
    assert net(torch.zeros(1, 5, 3, 3)).shape == (1, 1, 3, 3)  # smaller than the padding: edge copies


def test_generator_has_published_parameter_count():
    assert sum(p.numel() for p in TomoGAN(depth=1).parameters()) == 694_897


@pytest.mark.parametrize("kwargs", [{"depth": 2}, {"upsample": "bicubic"}])
def test_generator_rejects_bad_config(kwargs):
    with pytest.raises(ValueError):
        TomoGAN(**kwargs)


def test_generator_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="expects"):
        TomoGAN(depth=3)(torch.zeros(1, 1, 16, 16))


def test_nearest_and_bilinear_differ():
    torch.manual_seed(0)
    a = TomoGAN(depth=1, upsample="nearest")
    b = TomoGAN(depth=1, upsample="bilinear")
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 1, 16, 16)
    assert not torch.allclose(a(x), b(x))


def test_pad_to_multiple_reflects():
    x = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 8, 6)
    assert pad_to_multiple(x, 8)[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 4, 3]


def test_critic_scores_each_image():
    critic = TomoGANCritic(crop=16)
    assert critic(torch.zeros(3, 1, 16, 16)).shape == (3,)
    with pytest.raises(ValueError):
        TomoGANCritic(crop=20)
