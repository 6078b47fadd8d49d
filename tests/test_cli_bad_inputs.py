"""Every CLI command against one shared folder of bad inputs: exit 2, one line, no traceback.

A row is ``(argv, words)``: ``argv`` may use ``{bad}`` (the shared folder, built once per session
by :func:`bad`) and ``{out}`` (an empty folder for outputs, new for each row); ``words`` must
appear in the one-line ``tomoml: error: ...`` message. A new command joins by adding its rows to
``ROWS`` (and, if it needs them, its own bad files to :func:`bad`);
:func:`test_every_command_has_rows` lists the commands that have none yet.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex

import numpy as np
import pytest
import torch

from napari_tomoml import cli

# --------------------------------------------------------------------------------------------- table
ROWS: list[tuple[str, str]] = [
    # unreadable or empty scans and volumes
    ("info {bad}/missing.h5", "missing.h5"),
    ("info {bad}/corrupt.zarr", "corrupt or missing chunk"),
    ("reconstruct {bad}/corrupt.zarr {out}/r.npy", "corrupt or missing chunk"),
    ("denoise {bad}/corrupt.zarr {out}/d.npy --model {bad}/good.safetensors", "corrupt or missing chunk"),
    ("info {bad}/zero_angles.h5", "the scan is empty"),
    ("reconstruct {bad}/zero_angles.h5 {out}/r.npy", "the scan is empty"),
    ("info {bad}/zero_size.npy", "the scan is empty"),
    ("denoise {bad}/zero_size.npy {out}/d.npy --model {bad}/good.safetensors", "volume is empty"),
    ("denoise {bad}/truncated.npy {out}/d.npy --model {bad}/good.safetensors", "corrupt or truncated"),
    ("info {bad}/truncated.npy", "corrupt or truncated"),
    ("info {bad}/theta_5x6.h5", "angles have shape (5, 6)"),
    ("reconstruct {bad}/complex.npy {out}/r.npy --no-normalize", "complex64"),
    ("info {bad}/not_a_scan.h5", "not_a_scan.h5"),
    # outputs: the one refusal rule
    ("reconstruct {bad}/scan.h5 {bad}/scan.h5 --overwrite", "is the input"),
    ("reconstruct {bad}/scan.h5 {bad}/vol.npy", "already exists; pass --overwrite"),
    ("reconstruct {bad}/scan.h5 {out}/r.png", "unknown format"),
    ("reconstruct {bad}/scan.h5 {bad}/vol.npy/r.npy", "is a file, not a folder"),
    ("denoise {bad}/vol.npy {bad}/vol.npy --overwrite --model {bad}/good.safetensors", "is the input"),
    ("import-tomogan {bad}/not_a_scan.h5 {bad}/good", "already exists; pass --overwrite"),
    ("denoise {bad}/vol.npy {out}/d.npy --rows 7:9 --model {bad}/good.safetensors", "no slices selected"),
    ("train tomogan {bad}/notes --noisy {bad}/vol.npy --clean {bad}/vol.npy", "notes.json: already exists"),
    # model files that would lie
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/nan_weights.safetensors", "NaN/inf values"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/int_weights.safetensors", "torch.int32"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/swapped.safetensors", "does not match its card"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/huge_weights.safetensors", "entirely NaN/inf"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/str_version.safetensors", "format_version must be a whole number"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/list_arch.safetensors", "architecture must be a name"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/null_norm.safetensors", "normalization must be an object"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/zero_range.safetensors", "range must be two different"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/pct_150.safetensors", "between 0 and 100"),
    ("denoise {bad}/vol.npy {out}/d.npy --precision fp16 --model {bad}/good.safetensors", "choose one of fp32, bf16"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/reversed_pct.safetensors", "must be increasing"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/model.pt", "pickles"),
    ("denoise {bad}/vol.npy {out}/d.npy --model {bad}/not_a_scan.h5", "not a saved Keras model"),
    # training settings that cannot work
    ("train tomogan {out}/m --noisy {bad}/vol.npy --clean {bad}/vol.npy --batch 0", "batch must be"),
    ("train tomogan {out}/m --noisy {bad}/vol.npy --clean {bad}/vol.npy --steps 0", "nothing to train"),
    ("train tomogan {out}/m --noisy {bad}/vol.npy --clean {bad}/vol.npy --crop 500", "crop 500 is larger"),
    ("train tomogan {out}/m --noisy {bad}/vol.npy --clean {bad}/zero_size.npy", "differ in shape"),
    ("train tomogan {out}/m --pairs {bad}/not_a_scan.h5", "not_a_scan.h5"),
    # batch: usage errors before any work (a file that fails is exit 1, tests/tasks/test_batch.py)
    ("batch nosuch {bad} {out}/o", "unknown task 'nosuch'"),
    ("batch reconstruct {bad}/missing {out}/o", "no such file or folder"),
    ("batch reconstruct {bad}/*.nothing {out}/o", "matched no files"),
    ("batch reconstruct {bad} {out}/o --algorithm magic", "choose one of fbp"),
    ("batch reconstruct {bad} {out}/o --n-iter many", "expected int"),
    ("batch reconstruct {bad} {out}/o --bogus 1", "unrecognized arguments: --bogus"),
    ("batch reconstruct {bad} {bad}", "holds the inputs"),
    ("batch reconstruct {bad} {bad}/vol.npy", "is a file, not a folder"),
    ("batch reconstruct {bad} {out}/o --scheduler local:0", "local:N"),
    ("batch denoise {bad} {out}/o --workers 0", "workers=0"),
    ("batch reconstruct {bad}/scan.h5 {out}/o --chunk-rows 0", "chunk_rows=0"),
    # outlier tables
    ("outliers {bad}/corrupt.zarr --out {out}/t.csv", "corrupt or missing chunk"),
    ("outliers {bad}/zero_size.npy --out {out}/t.csv", "empty"),
    ("outliers {bad}/truncated.npy --out {out}/t.csv", "corrupt or truncated"),
    ("outliers {bad}/complex.npy --out {out}/t.csv", "complex64"),
    ("outliers {bad}/vol.npy --out {bad}/vol.npy --overwrite", "is the input"),
    ("outliers {bad}/vol.npy --out {out}/t.csv", "needs more than 90 items"),
    ("outliers {bad}/vol.npy --out {out}/t.csv --features pixel", "features='pixel' is unknown"),
    ("outliers {bad}/vol.npy --out {out}/t.csv --method pca --reference {bad}/scan.h5", "reference items are"),
    # segmentation
    ("segment {bad}/vol.npy {out}/s.npy --model {bad}/good.safetensors", "not a U-Net segmenter"),
    ("segment {bad}/complex.npy {out}/s.npy", "complex64"),
    ("segment {bad}/vol.npy {bad}/vol.npy --overwrite", "is an input"),
    ("segment {bad}/vol.npy {out}/s.npy --probabilities {out}/p.tif", "written as .npy"),
    ("train unet {out}/m --image {bad}/vol.npy --labels {bad}/zero_size.npy", "must match"),
    ("train unet {out}/m --image {bad}/vol.npy --labels {bad}/vol.npy --patch 16", "whole numbers"),
    ("train unet {bad}/good --image {bad}/vol.npy --labels {bad}/vol.npy", "exists; pass --overwrite"),
    # ptychography
    ("ptycho train {bad}/diffraction_rect.npz {bad}/labels.npy {out}/m", "must be square frames, got 16 x 12"),
    ("ptycho train {bad}/diffraction_nan.npz {bad}/labels.npy {out}/m", "contain NaN"),
    ("ptycho train {bad}/diffraction.npz {bad}/labels.npy {out}/m --size 12", "multiple of 8"),
    ("ptycho predict {bad}/diffraction_nan.npz {out}/p.npy --model ptychonn-sim", "contain NaN"),
    ("ptycho predict {bad}/diffraction.npz {out}/p.npy --model {bad}/good.safetensors", "not PtychoNN"),
    ("ptycho predict {bad}/diffraction.npz {out}/p.npy --model {bad}/missing.onnx", "does not exist"),
    ("ptycho predict {bad}/diffraction.npz {bad}/labels.npy --model ptychonn-sim", "exists; pass --overwrite"),
    ("ptycho predict {bad}/diffraction.npz {out}/p.tif --model ptychonn-sim", "write a .npy file"),
    ("ptycho simulate {out}/s --overlap 1.5", "overlap must be in [0, 1)"),
    ("ptycho simulate {out}/s --size 64 --shape 32 32", "does not fit"),
    ("ptycho live --model ptychonn-sim --simulate {bad}/diffraction.npz --positions {bad}/positions_5.npy",
     "6 diffraction patterns but 5 positions"),
    ("ptycho live --model ptychonn-sim", "choose one frame source"),
    # alignment
    ("align {bad}/zero_angles.h5 {out}/a.npy", "the scan is empty"),
    ("align {bad}/scan.h5 {bad}/scan.h5 --overwrite", "is the input"),
    ("align {bad}/scan.h5 {out}/a.npy --method magic", "choose one of joint, xcorr, learned"),
    ("align {bad}/scan.h5 {out}/a.npy --method learned --model {bad}/good.safetensors", "not an aligner"),
    ("align {bad}/scan.h5 {out}/a.png", "unknown format"),
    ("align {bad}/missing.h5 {out}/a.npy", "no such file or folder"),
]


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every runnable command of the parser, e.g. ``info``, ``train tomogan``."""
    found = []
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix}{name} ")
    return found or [prefix.strip()]


# --------------------------------------------------------------------------------------------- bad files
@pytest.fixture(scope="session")
def bad(tmp_path_factory):
    """The shared folder of bad inputs (and a few good ones to pair them with)."""
    from safetensors.torch import load_file, save_file

    from napari_tomoml.io.scan import Scan
    from napari_tomoml.io.writers import write_hdf5, write_zarr
    from napari_tomoml.models.store import save_model
    from napari_tomoml.models.tomogan import TomoGAN

    folder = tmp_path_factory.mktemp("bad-inputs")
    theta = np.linspace(0, np.pi, 12, endpoint=False)
    flats, darks = np.full((2, 4, 16), 1000, np.float32), np.zeros((2, 4, 16), np.float32)
    write_hdf5(folder / "scan.h5", Scan(np.full((12, 4, 16), 500, np.float32), theta, flats, darks))
    write_zarr(folder / "corrupt.zarr", Scan(np.full((12, 4, 16), 500, np.float32), theta, flats, darks),
               chunks=(4, 4, 16))
    chunk = sorted(p for p in glob.glob(str(folder / "corrupt.zarr" / "data" / "c" / "**"), recursive=True)
                   if os.path.isfile(p))[1]
    with open(chunk, "wb") as f:
        f.write(b"garbage" * 5)
    import h5py

    with h5py.File(folder / "zero_angles.h5", "w") as f:
        f.create_dataset("/exchange/data", shape=(0, 4, 16), dtype="f4")
        f.create_dataset("/exchange/theta", data=np.zeros(0))
    with h5py.File(folder / "theta_5x6.h5", "w") as f:
        f.create_dataset("/exchange/data", data=np.full((30, 4, 16), 0.5, np.float32))
        f.create_dataset("/exchange/theta", data=np.linspace(0, 180, 30).reshape(5, 6))
    with h5py.File(folder / "not_a_scan.h5", "w") as f:
        f.create_dataset("hello", data=[1, 2, 3])
    np.save(folder / "zero_size.npy", np.zeros((0, 32, 32), np.float32))
    np.save(folder / "vol.npy", np.random.default_rng(0).random((3, 32, 32)).astype(np.float32))
    whole = (folder / "vol.npy").read_bytes()
    (folder / "truncated.npy").write_bytes(whole[: len(whole) // 2])
    np.save(folder / "complex.npy", np.ones((12, 2, 16), np.complex64))
    (folder / "notes.json").write_text('{"my": "notes"}')
    (folder / "model.pt").write_bytes(b"\x80\x04not really a pickle")

    torch.manual_seed(0)
    save_model(TomoGAN(depth=1), folder / "good")
    state = load_file(str(folder / "good.safetensors"))
    card = json.loads((folder / "good.json").read_text())
    first = sorted(state)[0]

    def variant(name, tensors=None, keep_hash=False, **card_changes):
        save_file(tensors or state, str(folder / f"{name}.safetensors"))
        c = {**card, **card_changes}
        if not keep_hash:
            c.pop("weights_sha256")  # as a hand-made card
        (folder / f"{name}.json").write_text(json.dumps(c))

    variant("nan_weights", {**state, first: state[first] * float("nan")})
    variant("int_weights", {**state, first: state[first].to(torch.int32)})
    variant("huge_weights", {k: v * 1e30 for k, v in state.items()})
    variant("swapped", {**state, first: state[first] + 1}, keep_hash=True)  # card of other weights
    variant("str_version", format_version="2")
    variant("list_arch", architecture=["tomogan"])
    variant("null_norm", normalization=None)
    pct = {"kind": "percentile", "percentiles": [0.5, 99.5], "range": [0, 1]}
    variant("zero_range", normalization={**pct, "range": [0, 0]})
    variant("pct_150", normalization={**pct, "percentiles": [0.5, 150]})
    variant("reversed_pct", normalization={**pct, "percentiles": [99.5, 0.5]})

    # ptychography: 6 diffraction patterns in the published layout (.npz arr_0), their complex labels
    patterns = np.random.default_rng(0).poisson(20, (6, 16, 16)).astype(np.float32)
    np.savez(folder / "diffraction.npz", patterns)
    np.savez(folder / "diffraction_rect.npz", patterns[:, :, :12])
    with_nan = patterns.copy()
    with_nan[2, 3, 3] = np.nan
    np.savez(folder / "diffraction_nan.npz", with_nan)
    np.save(folder / "labels.npy", np.exp(1j * patterns / 20).astype(np.complex64))
    np.save(folder / "positions_5.npy", np.full((5, 2), 8.0))
    return folder


# --------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize(("argv", "words"), ROWS, ids=[argv.split(" {")[0] + ": " + words for argv, words in ROWS])
def test_bad_input_is_one_line_exit_2(bad, tmp_path, capsys, argv, words):
    before = sorted(p.name for p in bad.iterdir())
    args = [a.format(bad=bad, out=tmp_path) for a in shlex.split(argv)]
    code = cli.main([*args, "-q"] if args[0] in ("reconstruct", "denoise", "train") else args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("tomoml: error: "), err
    assert words in lines[0] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary left
    assert sorted(p.name for p in bad.iterdir()) == before  # nothing of the user's touched


def test_every_command_has_rows():
    commands = _commands(cli.build_parser())
    covered = {c for c in commands for argv, _ in ROWS if argv == c or argv.startswith(c + " ")}
    assert {"info", "reconstruct", "denoise", "train tomogan", "import-tomogan"} <= covered
    missing = sorted(set(commands) - covered)
    if missing:
        pytest.skip(f"commands without bad-input rows yet: {', '.join(missing)}")


def test_the_table_holds_for_a_real_process(bad, tmp_path):
    """One row through the installed entry point: the exit code and stderr a shell sees."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "napari_tomoml.cli", "info", str(bad / "corrupt.zarr")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("tomoml: error: ") and proc.stderr.count("\n") == 1
