"""The ``tomoml`` command line, in-process and once as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_tomoml import cli
from napari_tomoml.io.scan import Scan
from napari_tomoml.io.writers import write_hdf5

N_ANGLES, N_ROWS, N_COLS = 60, 3, 32


@pytest.fixture
def scan_h5(tmp_path) -> Path:
    """A tiny DXchange file: a disc of uniform attenuation, with flats and darks."""
    theta = np.linspace(0, np.pi, N_ANGLES, endpoint=False)
    x = np.arange(N_COLS) - (N_COLS - 1) / 2
    chord = 2 * np.sqrt(np.clip(10.0**2 - x**2, 0, None))  # path length through a radius-10 disc
    line = 0.05 * chord
    flat, dark = 1000.0, 10.0
    counts = dark + (flat - dark) * np.exp(-line)
    proj = np.broadcast_to(counts, (N_ANGLES, N_ROWS, N_COLS)).astype(np.float32)
    flats = np.full((2, N_ROWS, N_COLS), flat, np.float32)
    darks = np.full((2, N_ROWS, N_COLS), dark, np.float32)
    return write_hdf5(tmp_path / "disc.h5", Scan(proj, theta, flats, darks))


def test_info_prints_summary(scan_h5, capsys):
    assert cli.main(["info", str(scan_h5)]) == 0
    out = capsys.readouterr().out
    assert f"{N_ANGLES} x {N_ROWS} x {N_COLS}" in out
    assert "flats: 2, darks: 2" in out


def test_missing_file_exits_2_with_message(tmp_path, capsys):
    missing = tmp_path / "nope.h5"
    assert cli.main(["info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tomoml: error:") and "nope.h5" in err and "Traceback" not in err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "reconstruct" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [(None, None), ("2:5", slice(2, 5)), ("3:", slice(3, None)), (":4", slice(None, 4))],
)
def test_parse_rows(text, expected):
    assert cli.parse_rows(text) == expected


@pytest.mark.parametrize("text", ["5", "a:b", "5:2", "1:2:3"])
def test_bad_rows_is_a_clean_error(scan_h5, tmp_path, capsys, text):
    code = cli.main(["reconstruct", str(scan_h5), str(tmp_path / "r.npy"), "--rows", text, "-q"])
    assert code == 2
    assert "--rows" in capsys.readouterr().err


def test_unknown_output_format(scan_h5, tmp_path, capsys):
    assert cli.main(["reconstruct", str(scan_h5), str(tmp_path / "r.png"), "-q"]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_existing_output_needs_overwrite(scan_h5, tmp_path, capsys):
    out = tmp_path / "r.npy"
    out.write_bytes(b"")
    assert cli.main(["reconstruct", str(scan_h5), str(out), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_does_not_import_qt_or_napari(scan_h5):
    code = (
        "import sys; from napari_tomoml import cli; cli.main(['info', sys.argv[1]]); "
        "import napari_tomoml.tasks.train, napari_tomoml.tasks.denoise, napari_tomoml.tasks.reconstruct; "
        "bad = [m for m in ('napari', 'qtpy', 'PySide6', 'PyQt5', 'PyQt6', 'magicgui') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(scan_h5)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def _disc_recon_ok(volume: np.ndarray) -> None:
    """The reconstructed disc: about 0.05 / px inside, about 0 outside."""
    assert volume.shape == (N_ROWS, N_COLS, N_COLS) or volume.shape[1:] == (N_COLS, N_COLS)
    mid = volume[0]
    c = N_COLS // 2
    assert float(mid[c - 3 : c + 3, c - 3 : c + 3].mean()) == pytest.approx(0.05, abs=0.01)
    assert abs(float(mid[:3, :3].mean())) < 0.01


@pytest.mark.parametrize("suffix", [".npy", ".tif", ".h5", ".zarr"])
def test_reconstruct_writes_by_extension(scan_h5, tmp_path, capsys, suffix):
    from napari_tomoml import load_scan

    out = tmp_path / f"rec{suffix}"
    assert cli.main(["reconstruct", str(scan_h5), str(out), "--center", str(N_COLS / 2), "-q"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    volume = np.load(out) if suffix == ".npy" else np.asarray(load_scan(out).projections)
    _disc_recon_ok(volume)


def test_reconstruct_rows_auto_centre_sirt(scan_h5, tmp_path, capsys):
    out = tmp_path / "rec.npy"
    code = cli.main(["reconstruct", str(scan_h5), str(out), "--rows", "1:3", "--center", "auto",
                     "--algorithm", "sirt", "--n-iter", "30", "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    assert "rotation centre (found)" in capsys.readouterr().err
    volume = np.load(out)
    assert volume.shape == (2, N_COLS, N_COLS)
    _disc_recon_ok(volume)


def test_reconstruct_refuses_to_overwrite_then_overwrites(scan_h5, tmp_path, capsys):
    out = tmp_path / "rec.npy"
    assert cli.main(["reconstruct", str(scan_h5), str(out), "-q"]) == 0
    assert cli.main(["reconstruct", str(scan_h5), str(out), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["reconstruct", str(scan_h5), str(out), "-q", "--overwrite", "--filter", "hann"]) == 0


def test_unknown_filter_is_a_clean_error(scan_h5, tmp_path, capsys):
    assert cli.main(["reconstruct", str(scan_h5), str(tmp_path / "r.npy"), "--filter", "nope", "-q"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_console_script_end_to_end(scan_h5, tmp_path):
    """The installed ``tomoml`` command, as a user runs it: progress on stderr, exit codes."""
    exe = Path(sys.executable).with_name("tomoml")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_tomoml.cli"]
    out = tmp_path / "rec.tif"
    proc = subprocess.run([*cmd, "reconstruct", str(scan_h5), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and f"wrote {out}" in proc.stdout
    bad = subprocess.run([*cmd, "info", str(tmp_path / "missing.h5")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "missing.h5" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture
def pair_files(tmp_path, rng):
    from scipy import ndimage

    clean = ndimage.gaussian_filter(rng.random((6, 32, 32)), 2).astype(np.float32)
    noisy = (clean + 0.05 * rng.standard_normal(clean.shape)).astype(np.float32)
    np.save(tmp_path / "noisy.npy", noisy)
    np.save(tmp_path / "clean.npy", clean)
    return tmp_path / "noisy.npy", tmp_path / "clean.npy"


def test_train_then_denoise(pair_files, tmp_path, capsys):
    noisy, clean = pair_files
    model = tmp_path / "models" / "mine"
    code = cli.main(["train", "tomogan", str(model), "--noisy", str(noisy), "--clean", str(clean),
                     "--steps", "2", "--batch", "2", "--crop", "16", "--depth", "1", "--val-every", "1",
                     "--lambda-adv", "0", "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    weights = model.with_name("mine.safetensors")
    assert weights.is_file() and model.with_name("mine.json").is_file()

    out = tmp_path / "denoised.tif"
    assert cli.main(["denoise", str(noisy), str(out), "--model", str(weights), "--device", "cpu", "-q"]) == 0
    from napari_tomoml import load_scan

    assert load_scan(out).projections.shape == (6, 32, 32)


def test_train_needs_data(tmp_path, capsys):
    assert cli.main(["train", "tomogan", str(tmp_path / "m"), "-q"]) == 2
    assert "--pairs" in capsys.readouterr().err
    assert cli.main(["train"]) == 2


def test_denoise_with_unknown_model_is_a_clean_error(pair_files, tmp_path, capsys):
    noisy, _ = pair_files
    assert cli.main(["denoise", str(noisy), str(tmp_path / "d.npy"), "--model", "no-such-model", "-q"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "Traceback" not in err


def test_import_tomogan(shared_data, tmp_path, capsys):
    keras = shared_data / "tomogan_published" / "TomoGAN.h5"
    assert cli.main(["import-tomogan", str(keras), str(tmp_path / "published")]) == 0
    assert (tmp_path / "published.safetensors").is_file()


TRAIN_ARGS = ["--steps", "6", "--batch", "2", "--crop", "16", "--depth", "1", "--val-every", "2",
              "--lambda-adv", "1e-3", "--device", "cpu", "-q", "--resume"]
KILLED_CLI = """
import os, signal, sys
import torch
torch.set_num_threads(1)
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):
    if obj["step"] == 4:  # fault injection: kill -9 inside the second checkpoint
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, f, *args, **kwargs)
torch.save = dying_save
from napari_tomoml import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_kill_9_during_training_then_the_same_command_ends_like_an_uninterrupted_run(pair_files, tmp_path, capsys, one_torch_thread):
    """Regression: each run checkpointed into a new temporary folder, so a rerun started at step 1."""
    from safetensors.torch import load_file

    noisy, clean = pair_files
    data = ["--noisy", str(noisy), "--clean", str(clean)]
    killed = tmp_path / "killed"
    argv = ["train", "tomogan", str(killed), *data, *TRAIN_ARGS]
    proc = subprocess.run([sys.executable, "-c", KILLED_CLI, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    checkpoint = tmp_path / "killed.checkpoint"
    assert (checkpoint / "step-000000002" / "state.pt").is_file()  # beside the output, user-visible
    assert not (tmp_path / "killed.safetensors").exists()

    assert cli.main(argv) == 0, capsys.readouterr().err  # the same command again
    assert not checkpoint.exists()  # done: the checkpoint is gone, the model is saved
    assert cli.main(["train", "tomogan", str(tmp_path / "straight"), *data, *TRAIN_ARGS]) == 0
    resumed, straight = load_file(str(tmp_path / "killed.safetensors")), load_file(str(tmp_path / "straight.safetensors"))
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key  # bitwise on CPU with a seed


def test_train_refuses_an_interrupted_run_without_resume_and_other_settings_with_it(pair_files, tmp_path, capsys):
    from napari_tomoml.training.trainer import latest_checkpoint

    noisy, clean = pair_files
    data = ["--noisy", str(noisy), "--clean", str(clean)]
    checkpoint = tmp_path / "ckpt"
    first = ["train", "tomogan", str(tmp_path / "m"), *data, *TRAIN_ARGS[:-2], "--checkpoint", str(checkpoint)]
    first[first.index("--steps") + 1] = "2"  # a short run stands in for an interrupted one
    assert cli.main([*first, "-q"]) == 0
    assert not checkpoint.exists()
    checkpoint.mkdir()
    (checkpoint / "step-000000002").mkdir()
    (checkpoint / "step-000000002" / "state.pt").write_bytes(b"")
    (checkpoint / "run.json").write_text("{}")
    assert latest_checkpoint(checkpoint) is not None
    again = ["train", "tomogan", str(tmp_path / "m2"), *data, *TRAIN_ARGS[:-2], "--checkpoint", str(checkpoint), "-q"]
    assert cli.main(again) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert cli.main([*again, "--resume"]) == 2
    assert "other settings or data" in capsys.readouterr().err
    assert cli.main([*again, "--overwrite"]) == 0  # start over


def test_train_refuses_an_existing_card_even_without_weights(pair_files, tmp_path, capsys):
    """Regression: only OUT.safetensors was checked; the user's OUT.json (notes) was replaced."""
    noisy, clean = pair_files
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    code = cli.main(["train", "tomogan", str(tmp_path / "notes"), "--noisy", str(noisy), "--clean", str(clean), "-q"])
    assert code == 2 and "notes.json: already exists" in capsys.readouterr().err
    assert notes.read_text() == '{"my": "notes"}'


def test_import_tomogan_refuses_to_replace_without_overwrite(shared_data, tmp_path, capsys):
    """Regression: import-tomogan replaced out.safetensors / out.json and had no --overwrite."""
    keras = shared_data / "tomogan_published" / "TomoGAN.h5"
    if not keras.is_file():
        pytest.skip("published TomoGAN.h5 absent")
    out = tmp_path / "published"
    assert cli.main(["import-tomogan", str(keras), str(out)]) == 0
    before = (tmp_path / "published.safetensors").read_bytes(), (tmp_path / "published.json").read_bytes()
    assert cli.main(["import-tomogan", str(keras), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert ((tmp_path / "published.safetensors").read_bytes(), (tmp_path / "published.json").read_bytes()) == before
    assert cli.main(["import-tomogan", str(keras), str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("suffix", [".npy", ".h5", ".zarr"])
def test_output_equal_to_input_is_refused_even_with_overwrite(scan_h5, tmp_path, capsys, suffix):
    """Regression: reconstruct/denoise with OUTPUT = INPUT and --overwrite replaced the input."""
    vol = tmp_path / f"vol{suffix}"
    cli.write_volume(vol, np.ones((2, 16, 16), np.float32))
    assert cli.main(["denoise", str(vol), str(vol), "--overwrite", "-q"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert cli.main(["reconstruct", str(scan_h5), str(scan_h5), "--overwrite", "-q"]) == 2
    assert "is the input" in capsys.readouterr().err


def test_killed_npy_reconstruction_keeps_the_previous_result(scan_h5, tmp_path):
    """Regression: kill -9 during `reconstruct --overwrite` to .npy truncated the previous file."""
    out = tmp_path / "rec.npy"
    assert cli.main(["reconstruct", str(scan_h5), str(out), "-q"]) == 0
    before = out.read_bytes()
    script = (  # fault injection: kill -9 right after the first slab reached the disk
        "import os, signal, sys\n"
        "from napari_tomoml.io import writers\n"
        "real = writers._NpyFile.__setitem__\n"
        "def dying(self, key, slab):\n"
        "    real(self, key, slab); self.file.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "writers._NpyFile.__setitem__ = dying\n"
        "from napari_tomoml import cli\n"
        "cli.main(sys.argv[1:])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, "reconstruct", str(scan_h5), str(out), "--overwrite", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert out.read_bytes() == before
    np.load(out)  # still a valid array


def test_denoise_batch_changes_memory_not_the_result(tmp_path, rng):
    vol = tmp_path / "vol.npy"
    np.save(vol, rng.random((3, 40, 40)).astype(np.float32))
    for batch in ("1", "4"):
        assert cli.main(["denoise", str(vol), str(tmp_path / f"d{batch}.npy"), "--batch", batch, "--device", "cpu", "-q"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "d1.npy"), np.load(tmp_path / "d4.npy"), atol=1e-5)  # batched BLAS rounding


def test_denoise_rows_is_a_band_denoised_on_its_own(tmp_path, rng):
    import napari_tomoml as tm

    vol = tmp_path / "vol.npy"
    np.save(vol, rng.random((6, 40, 40)).astype(np.float32))
    assert cli.main(["denoise", str(vol), str(tmp_path / "band.npy"), "--rows", "2:5", "--device", "cpu", "-q"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "band.npy"), tm.denoise(np.load(vol)[2:5], device="cpu"))
