"""One large file as slabs of rows (tasks/chunked.py): equal to the single-process run bit for bit,
in this process and as Dask tasks, resumable slab by slab, nothing half-written after a cancel."""

from __future__ import annotations

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.io.scan import Scan
from napari_tomoml.io.writers import write_hdf5
from napari_tomoml.tasks.chunked import chunk_bounds, chunked_steps, parts_folder


@pytest.fixture
def big(tmp_path):
    """A raw scan of 11 detector rows (odd: the last slab is short) and a 9-slice volume."""
    rng = np.random.default_rng(3)
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    yy, xx = np.mgrid[:11, :40]
    proj = (600 + 300 * np.exp(-((xx - 20.0) ** 2) / 60) * (1 + yy / 11)[None]
            + 20 * rng.random((30, 11, 40))).astype(np.float32)
    write_hdf5(tmp_path / "in" / "scan.h5", Scan(proj, theta, np.full((2, 11, 40), 1000, np.float32),
                                                 np.zeros((2, 11, 40), np.float32)))
    np.save(tmp_path / "in" / "volume.npy", rng.random((9, 40, 40)).astype(np.float32))
    return tmp_path / "in"


def _messages(steps):
    messages = []
    while True:
        try:
            messages.append(next(steps).message)
        except StopIteration as stop:
            return messages, stop.value


def test_bounds_are_even_and_cover_the_rows():
    assert chunk_bounds(11, 3) == [(0, 4), (4, 8), (8, 11)]
    assert chunk_bounds(4, 10) == [(0, 4)]
    with pytest.raises(InputError, match="chunk_rows=0"):
        chunk_bounds(4, 0)
    with pytest.raises(InputError, match="runs a file as a whole"):
        next(chunked_steps("align", "a.h5", "b.csv"))


@pytest.mark.parametrize(("task", "name", "options"), [
    ("reconstruct", "scan.h5", {"center": "auto"}),
    ("reconstruct", "scan.h5", {"algorithm": "sirt", "n_iter": 5, "center": "19.5"}),
    ("denoise", "volume.npy", {"device": "cpu"}),
])
def test_slabs_in_this_process_equal_the_whole_file(big, tmp_path, one_torch_thread, task, name, options):
    whole = tm.batch(task, [big / name], tmp_path / "whole", options=options)
    slabs = tm.batch(task, [big / name], tmp_path / "slabs", options=options, chunk_rows=3)
    assert whole["status"] == slabs["status"] == ["ok"], slabs[0]["error"]
    out = name.split(".")[0] + ".npy"
    np.testing.assert_array_equal(np.load(tmp_path / "slabs" / out), np.load(tmp_path / "whole" / out))
    assert sorted(p.name for p in (tmp_path / "slabs").iterdir()) == ["batch-summary.csv", out]  # parts removed


def test_the_memory_limit_does_not_change_the_result(big, one_torch_thread):
    """Slabs the memory limit makes are even too: an odd one would pair other rows in the FBP."""
    from napari_tomoml.progress import run_to_end
    from napari_tomoml.tasks.reconstruct import reconstruct_scan_steps, slab_rows

    scan = tm.load_scan(big / "scan.h5")
    per_row = 30 * 40 * (4 + 28) + 64 * 40 * 40  # slab_rows' working set of one row
    limit = (64 << 20) + 3 * per_row
    assert slab_rows(30, 40, 40, 4, limit, 11) == 2
    meta = {"flats": scan.flats, "darks": scan.darks}
    small, _ = run_to_end(reconstruct_scan_steps(scan.projections, scan.theta, None, metadata=meta, max_memory=limit,
                                                 device="cpu"))
    whole, _ = run_to_end(reconstruct_scan_steps(scan.projections, scan.theta, None, metadata=meta, max_memory=None,
                                                 device="cpu"))
    assert small.tobytes() == whole.tobytes()


def test_a_cancelled_run_resumes_with_the_missing_slabs(big, tmp_path, one_torch_thread):
    out = tmp_path / "out" / "scan.npy"
    steps = chunked_steps("reconstruct", big / "scan.h5", out, chunk_rows=2)
    for p in steps:  # stop inside the third slab
        if p.message.startswith("slab 4-"):
            break
    steps.close()
    parts = parts_folder(out)
    assert not out.exists() and sorted(p.name for p in parts.glob("*.npy")) == [
        "rows-0000000-0000002.npy", "rows-0000002-0000004.npy"]  # finished slabs only, no temporary
    assert not [p for p in parts.iterdir() if p.name.startswith(".")]
    messages, meta = _messages(chunked_steps("reconstruct", big / "scan.h5", out, chunk_rows=2))
    assert [m.split(": ")[1] for m in messages if m.endswith(("skipped", "ok"))] == ["skipped"] * 2 + ["ok"] * 4
    assert meta["chunks"][:2] == [[0, 2], [2, 4]] and meta["parameters"]["rows"] == [0, 11]
    assert not parts.exists()
    whole = tm.batch("reconstruct", [big / "scan.h5"], tmp_path / "whole")
    np.testing.assert_array_equal(np.load(out), np.load(whole[0]["output"]))


def test_cli_batch_splits_one_file(big, tmp_path, capsys):
    from napari_tomoml import cli

    assert cli.main(["batch", "reconstruct", str(big / "scan.h5"), str(tmp_path / "o"), "--chunk-rows", "4", "-q"]) == 0
    assert "1 ok" in capsys.readouterr().out
    whole = tm.batch("reconstruct", [big / "scan.h5"], tmp_path / "whole")
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "scan.npy"), np.load(whole[0]["output"]))


@pytest.mark.slow
def test_slabs_as_dask_tasks_equal_the_single_process_run(big, tmp_path, one_torch_thread, dask_scheduler):
    for task, name in (("reconstruct", "scan.h5"), ("denoise", "volume.npy")):
        whole = tm.batch(task, [big / name], tmp_path / "whole", options={"device": "cpu"})
        dask = tm.batch(task, [big / name], tmp_path / "dask", options={"device": "cpu"}, scheduler=dask_scheduler,
                        chunk_rows=4)
        assert dask["status"] == ["ok"], dask[0]["error"]
        assert np.load(dask[0]["output"]).tobytes() == np.load(whole[0]["output"]).tobytes()
        assert min(p.name for p in (tmp_path / "dask").iterdir()) == "batch-summary.csv"  # no hidden parts left
