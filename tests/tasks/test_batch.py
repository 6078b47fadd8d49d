"""tm.batch over folders: failures logged and skipped, resume, cancel, never over an input, Dask."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml import cli
from napari_tomoml.errors import InputError, OutputError
from napari_tomoml.io.scan import Scan
from napari_tomoml.io.writers import write_hdf5, write_zarr
from napari_tomoml.tasks.batch import SUMMARY_NAME, batch_steps, find_inputs, parse_scheduler, read_summary

THETA = np.linspace(0, np.pi, 24, endpoint=False)


def _scan(seed: int) -> Scan:
    rng = np.random.default_rng(seed)
    proj = (700 + 200 * rng.random((24, 3, 32))).astype(np.float32)
    return Scan(proj, THETA, np.full((2, 3, 32), 1000, np.float32), np.zeros((2, 3, 32), np.float32))


@pytest.fixture
def night(tmp_path):
    """A night shift: three good HDF5 scans, one truncated, one zarr scan, a text file."""
    folder = tmp_path / "night"
    for i in range(3):
        write_hdf5(folder / f"scan_{i}.h5", _scan(i))
    write_hdf5(folder / "scan_9.h5", _scan(9))
    whole = (folder / "scan_9.h5").read_bytes()
    (folder / "scan_9.h5").write_bytes(whole[: len(whole) // 2])
    write_zarr(folder / "scan_4.zarr", _scan(4))
    (folder / "notes.txt").write_text("beam lost at 3am")
    return folder


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".npy"}


def test_a_bad_file_is_reported_and_the_rest_done(night, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in night.iterdir()}
    seen = []
    summary = tm.batch("reconstruct", night, tmp_path / "out", options={"center": "15.5"}, progress=seen.append)
    status = dict(zip([os.path.basename(p) for p in summary["input"]], summary["status"], strict=True))
    assert status == {"notes.txt": "failed", "scan_0.h5": "ok", "scan_1.h5": "ok", "scan_2.h5": "ok",
                      "scan_4.zarr": "ok", "scan_9.h5": "failed"}
    errors = {os.path.basename(r["input"]): r["error"] for r in summary.failed}
    assert "scan_9.h5: not a readable HDF5 file, corrupt or truncated" in errors["scan_9.h5"]
    assert "unknown scan format '.txt'" in errors["notes.txt"]
    # outputs equal the plain function on each good scan; nothing else left in the folder
    for name in ("scan_0", "scan_4"):
        scan = tm.load_scan(night / (name + (".h5" if name == "scan_0" else ".zarr")))
        plain, _ = tm.reconstruct(tm.normalize(scan), scan.theta, center=15.5, device="cpu")
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"), plain, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["scan_0.npy", "scan_1.npy", "scan_2.npy", "scan_4.npy", SUMMARY_NAME])
    # the CSV holds the same table; the inputs were not touched
    on_disk = read_summary(tmp_path / "out" / SUMMARY_NAME)
    assert on_disk["status"] == summary["status"] and on_disk["error"] == summary["error"]
    assert {p.name: p.stat().st_mtime_ns for p in night.iterdir()} == before
    # overall progress in files, per-file progress inside
    assert seen[-1].done == seen[-1].total == 6
    assert any("file_done" in p.data for p in seen) and sum("row" in p.data for p in seen) == 6


def test_resume_skips_exactly_the_finished_ones(night, tmp_path):
    out = tmp_path / "out"
    tm.batch("reconstruct", night, out)
    first = _bytes(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    os.remove(out / "scan_1.npy")
    again = tm.batch("reconstruct", night, out)
    status = dict(zip([os.path.basename(p) for p in again["input"]], again["status"], strict=True))
    assert status["scan_0.h5"] == status["scan_2.h5"] == status["scan_4.zarr"] == "skipped"
    assert status["scan_1.h5"] == "ok" and status["scan_9.h5"] == "failed"  # failures are retried
    assert _bytes(out) == first
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in stamps.items() if n != "scan_1.npy")
    redo = tm.batch("reconstruct", night, out, resume=False)
    assert redo["status"].count("ok") == 4 and _bytes(out) == first


def test_cancel_within_a_file_leaves_no_partial_output_and_a_rerun_finishes(night, tmp_path):
    import psutil

    out = tmp_path / "out"
    # --memory is the process's peak: leave 1 GiB above what this (long) test process holds
    memory = f"{psutil.Process().memory_info().rss / 2**30 + 1:.2f}GiB"
    steps = batch_steps("reconstruct", [night / "scan_0.h5", night / "scan_1.h5"], out,
                        options={"memory": memory})
    for p in steps:  # stop inside the second file, after its first step
        if p.data.get("index") == 1 and "file_done" in p.data and p.data["file_done"] > 0:
            break
    steps.close()
    assert sorted(p.name for p in out.iterdir()) == [SUMMARY_NAME, "scan_0.npy"]  # no temporary left
    assert read_summary(out / SUMMARY_NAME)["status"] == ["ok", "cancelled"]
    tm.batch("reconstruct", [night / "scan_0.h5", night / "scan_1.h5"], out)
    tm.batch("reconstruct", [night / "scan_0.h5", night / "scan_1.h5"], tmp_path / "whole")
    assert _bytes(out) == _bytes(tmp_path / "whole")


def test_leftovers_of_a_killed_run_are_cleaned(night, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = out / ".scan_0.npy.tmp-999999999-deadbeef"  # what kill -9 leaves: a temporary of a gone process
    dead.write_bytes(b"half a volume")
    summary = tm.batch("reconstruct", [night / "scan_0.h5"], out)
    assert summary["status"] == ["ok"] and not dead.exists()


def test_inputs_folder_glob_and_list(night, tmp_path):
    assert [p.name for p in find_inputs(night)] == ["notes.txt", "scan_0.h5", "scan_1.h5", "scan_2.h5",
                                                    "scan_4.zarr", "scan_9.h5"]
    assert [p.name for p in find_inputs(str(night / "scan_[0-2].h5"))] == ["scan_0.h5", "scan_1.h5", "scan_2.h5"]
    with pytest.raises(InputError, match="matched no files"):
        find_inputs(str(night / "*.nothing"))
    summary = tm.batch("reconstruct", [night / "scan_0.h5", night / "gone.h5"], tmp_path / "o")
    assert summary["status"] == ["ok", "failed"] and "no such file" in summary[1]["error"]


def test_never_writes_over_an_input(night, tmp_path):
    with pytest.raises(OutputError, match="holds the inputs"):
        tm.batch("reconstruct", night, night)
    np.save(tmp_path / "vol.npy", np.zeros((3, 16, 16), np.float32))
    with pytest.raises(OutputError, match="holds the inputs"):  # denoise vol.npy -> vol.npy in its own folder
        tm.batch("denoise", [tmp_path / "vol.npy"], tmp_path)
    (tmp_path / "link").symlink_to(night)
    with pytest.raises(OutputError, match="holds the inputs"):
        tm.batch("reconstruct", night, tmp_path / "link")
    assert not (night / SUMMARY_NAME).exists()


def test_scheduler_argument():
    assert parse_scheduler(None, 1) is None and parse_scheduler(None, 3) == 3
    assert parse_scheduler("local:2", 1) == 2 and parse_scheduler("tcp://node7:8786", 1) == "tcp://node7:8786"
    for bad in ("local:0", "local:x", "not an address"):
        with pytest.raises(InputError, match="scheduler"):
            parse_scheduler(bad, 1)
    with pytest.raises(InputError, match="not both"):
        parse_scheduler("local:2", 2)


def test_cli_exit_codes(night, tmp_path, capsys):
    good = tmp_path / "good"
    good.mkdir()
    for name in ("scan_0.h5", "scan_1.h5"):
        (good / name).write_bytes((night / name).read_bytes())
    assert cli.main(["batch", "reconstruct", str(good), str(tmp_path / "a"), "-q", "--algorithm", "fbp"]) == 0
    assert cli.main(["batch", "reconstruct", str(good), str(tmp_path / "a"), "-q"]) == 0  # all skipped
    assert "0 ok, 2 skipped, 0 failed" in capsys.readouterr().out
    assert cli.main(["batch", "reconstruct", str(night), str(tmp_path / "b"), "-q"]) == 1
    out = capsys.readouterr().out
    assert "4 ok, 0 skipped, 2 failed" in out and "scan_9.h5" in out
    rows = list(csv.DictReader(open(tmp_path / "b" / SUMMARY_NAME)))
    assert [r["status"] for r in rows].count("failed") == 2


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_outputs(night, tmp_path):
    pytest.importorskip("distributed")
    inputs = [night / f"scan_{i}.h5" for i in range(3)] + [night / "scan_9.h5"]
    one = tm.batch("reconstruct", inputs, tmp_path / "one")
    two = tm.batch("reconstruct", inputs, tmp_path / "two", scheduler="local:2")
    assert two["status"] == one["status"] == ["ok", "ok", "ok", "failed"]
    assert two[3]["error"] == one[3]["error"]
    assert _bytes(tmp_path / "two") == _bytes(tmp_path / "one")


@pytest.mark.slow
def test_cancel_reaches_a_file_running_on_a_dask_worker(tmp_path, dask_scheduler):
    """Closing the batch sets a Dask event the running files see at their next progress step:
    they stop and remove their partial outputs (temporaries of a live worker, not leftovers)."""
    import time

    rng = np.random.default_rng(0)
    inputs = []
    for i in range(2):  # each ~15 s of TomoGAN on one thread: still running when cancelled
        inputs.append(tmp_path / f"vol_{i}.npy")
        np.save(inputs[-1], rng.random((400, 64, 64)).astype(np.float32))
    out = tmp_path / "out"
    steps = batch_steps("denoise", inputs, out, options={"device": "cpu"}, scheduler=dask_scheduler)
    deadline = time.monotonic() + 120
    for _ in steps:  # the scheduler's progress comes every half second while files run
        if len(list(out.glob(".vol_*.npy.tmp-*"))) == 2 or time.monotonic() > deadline:
            break  # both files are being written
    assert len(list(out.glob(".vol_*.npy.tmp-*"))) == 2
    start = time.monotonic()
    steps.close()
    assert time.monotonic() - start < 30  # at the next slice, not at the end of the file
    assert sorted(p.name for p in out.iterdir()) == [SUMMARY_NAME]  # nothing half-written left
    assert read_summary(out / SUMMARY_NAME)["status"] == ["cancelled", "cancelled"]
