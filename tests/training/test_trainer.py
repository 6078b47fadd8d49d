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
    return _pairs()


def _pairs():
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
        assert torch.equal(resumed.task.generator.state_dict()[key], value), key  # bitwise on CPU


def test_cancel_stops_at_a_yield_and_keeps_the_best(pairs, tmp_path):
    trainer = _trainer(pairs, tmp_path / "ckpt", val_every=2)
    steps = trainer.steps(100)
    for progress in steps:
        if progress.done == 5:
            break
    steps.close()
    assert trainer.step == 5
    ckpt = tmp_path / "ckpt" / "step-000000005"
    assert (ckpt / "state.pt").is_file() and (ckpt / "best.safetensors").is_file()
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [ckpt.name]  # one complete checkpoint
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


KILLED_TRAINING = """
import os, signal, sys
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[2])
from test_trainer import CROP, BATCH, _pairs, _trainer
from napari_tomoml.progress import run_to_end

real_save = torch.save
def dying_save(obj, f, *args, **kwargs):
    if obj["step"] == 4:  # inside the second checkpoint: its weights are written, its state is not
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, f, *args, **kwargs)
torch.save = dying_save
run_to_end(_trainer(_pairs(), sys.argv[1], val_every=2).steps(6))
"""


def test_kill_9_inside_a_checkpoint_then_resume_equals_an_uninterrupted_run(pairs, tmp_path, one_torch_thread):
    """Regression: files of a checkpoint were replaced one at a time; a kill mixed steps 9 and 10."""
    import subprocess
    import sys
    from pathlib import Path

    ckpt = tmp_path / "ckpt"
    proc = subprocess.run([sys.executable, "-c", KILLED_TRAINING, str(ckpt), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    names = sorted(p.name for p in ckpt.iterdir())
    assert names[-1] == "step-000000002" and names[0].startswith(".step-000000004.tmp-")  # half a save
    resumed = _trainer(pairs, ckpt, val_every=2)
    assert resumed.step == 2  # the last complete checkpoint, not the half-written one
    run_to_end(resumed.steps(6))
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-000000006"]  # leftovers cleaned
    straight = _trainer(pairs, val_every=2)
    run_to_end(straight.steps(6))
    for key, value in straight.task.generator.state_dict().items():
        assert torch.equal(resumed.task.generator.state_dict()[key], value), key
