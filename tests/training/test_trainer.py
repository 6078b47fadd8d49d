import numpy as np
import pytest
import torch

from napari_tomoml.models.tomogan import TomoGAN
from napari_tomoml.progress import run_to_end
from napari_tomoml.training.data import PairedVolumes
from napari_tomoml.training.tomogan import TomoGANLossConfig, TomoGANTask
from napari_tomoml.training.trainer import Trainer

CROP, BATCH = 16, 4


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    clean = np.zeros((4, 32, 32), np.float32)
    clean[:, 8:24, 10:20] = 1.0
    clean[:, 20:28, 4:12] = 0.5
    return PairedVolumes.from_arrays(clean + 0.2 * rng.standard_normal(clean.shape).astype(np.float32), clean)


def _trainer(pairs, tmp_path=None, seed=0, lr=3e-3, adv_start=0, **kw):
    torch.manual_seed(seed)
    cfg = TomoGANLossConfig(lr_generator=lr, lambda_adv=1e-3, lambda_vgg=0.0, adv_start=adv_start, n_critic=1)
    task = TomoGANTask(TomoGAN(depth=1), crop=CROP, losses=cfg)
    return Trainer(
        task, lambda rng: pairs.sample_batch(rng, BATCH, CROP, 1), pairs.validation_pairs(1, n=2),
        checkpoint_dir=tmp_path, seed=seed, device="cpu", **kw,
    )


def _val_loss(trainer):
    net = trainer.task.generator.eval()
    with torch.no_grad():
        return np.mean([float(((net(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).mean()) for x, y in trainer.validation])


def test_short_training_lowers_validation_loss(pairs):
    trainer = _trainer(pairs, val_every=10, adv_start=30)
    before = _val_loss(trainer)
    result = run_to_end(trainer.steps(40))
    assert result.step == 40 and len(result.history) == 4
    assert result.best < 0.5 * before
    assert "train_critic" in result.history[-1]  # the critic joined at adv_start
    assert _val_loss(trainer) == pytest.approx(result.best, rel=1e-4)  # best weights are in place


def test_resume_continues_the_step_count_and_repeats_the_run(pairs, tmp_path):
    straight = _trainer(pairs, val_every=3)
    run_to_end(straight.steps(6))
    first = _trainer(pairs, tmp_path / "ckpt", val_every=3)
    run_to_end(first.steps(3))
    resumed = _trainer(pairs, tmp_path / "ckpt", val_every=3)
    assert resumed.step == 3 and len(resumed.history) == 1
    result = run_to_end(resumed.steps(6))
    assert result.step == 6
    for key, value in straight.task.generator.state_dict().items():
        torch.testing.assert_close(resumed.task.generator.state_dict()[key], value, rtol=1e-4, atol=1e-6)


def test_cancel_stops_at_a_yield_and_keeps_the_best(pairs, tmp_path):
    trainer = _trainer(pairs, tmp_path / "ckpt", val_every=2)
    steps = trainer.steps(100)
    for progress in steps:
        if progress.done == 5:
            break
    steps.close()
    assert trainer.step == 5
    assert (tmp_path / "ckpt" / "state.pt").is_file() and (tmp_path / "ckpt" / "best.safetensors").is_file()
    assert _val_loss(trainer) == pytest.approx(trainer.best, rel=1e-4)

    trainer.request_stop()
    assert run_to_end(trainer.steps(100)).cancelled


def test_early_stopping_when_validation_stops_improving(pairs):
    trainer = _trainer(pairs, val_every=1, patience=2, lr=0.0)
    result = run_to_end(trainer.steps(50))
    assert result.stopped_early and result.step == 3


def test_progress_carries_losses_for_live_plots(pairs):
    trainer = _trainer(pairs, val_every=2)
    items = list(trainer.steps(2))
    assert items[0].data["losses"]["mse"] > 0 and "validation" in items[1].data


def test_epochs_are_whole_numbers_of_steps(pairs):
    trainer = _trainer(pairs, val_every=100, steps_per_epoch=2)
    assert run_to_end(trainer.epochs(2)).step == 4
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _trainer(pairs).epochs(1)
