"""Batch widget: a temporary folder of small scans → a live table, a result opened by double-click."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml.tasks.registry import get_task

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari


@pytest.fixture
def folder(tmp_path):
    from napari_tomoml.io.scan import Scan
    from napari_tomoml.io.writers import write_hdf5

    folder = tmp_path / "scans"
    theta = np.linspace(0, np.pi, 24, endpoint=False)
    for i in range(2):
        proj = np.full((24, 3, 32), 600 + 100 * i, np.float32)
        write_hdf5(folder / f"scan_{i}.h5", Scan(proj, theta, np.full((2, 3, 32), 1000, np.float32)))
    whole = (folder / "scan_1.h5").read_bytes()
    (folder / "scan_2.h5").write_bytes(whole[: len(whole) // 3])  # truncated
    return folder


def test_batch_over_a_folder(make_napari_viewer, qtbot, folder, tmp_path, notifications):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Batch")
    widget.input_edit.setText(str(folder))
    widget.output_edit.setText(str(tmp_path / "out"))
    widget.task_combo.setCurrentText("reconstruct")
    assert [w.name for w in widget.params][:2] == ["algorithm", "center"]  # from the registry
    widget.params.center.value = "15.5"
    widget.params.device.value = "cpu"
    widget.params.format.value = "h5"  # keeps the provenance
    widget.run_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    assert [widget.status(i) for i in range(3)] == ["ok", "ok", "failed"]
    assert "corrupt or truncated" in widget.table.item(2, 3).text()
    assert float(widget.table.item(0, 2).text()) >= 0
    assert widget.runner.progress_value == (1, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["batch-summary.csv", "scan_0.h5", "scan_1.h5"]

    layer = widget.open_row(1)  # what a double-click does
    assert layer.name == "scan_1" and viewer.layers.selection.active.name == "scan_1"
    layer = viewer.layers["scan_1"]
    assert layer.data.shape == (3, 32, 32)
    assert layer.metadata["task"] == "reconstruct" and layer.metadata["source"].endswith("scan_1.h5")
    assert widget.open_row(2) is None  # a failed file has no result

    widget.run_button.click()  # again: everything finished is skipped
    assert wait_done(qtbot, widget.runner) == "ok"
    assert [widget.status(i) for i in range(3)] == ["skipped", "skipped", "failed"]


def test_task_menu_swaps_parameters_and_bad_inputs_notify(make_napari_viewer, tmp_path, notifications):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Batch")
    widget.task_combo.setCurrentText("denoise")
    assert [w.name for w in widget.params] == get_task("denoise").names()  # the registry's, in its order
    assert "tile" in get_task("denoise").names()
    widget.input_edit.setText(str(tmp_path / "missing"))
    widget.output_edit.setText(str(tmp_path / "out"))
    widget.run()
    assert not widget.runner.running and "no such file or folder" in notifications[0]
    assert not (tmp_path / "out").exists()


def test_cancel_stops_the_batch_and_keeps_what_finished(make_napari_viewer, qtbot, folder, tmp_path, notifications):
    from napari_tomoml.tasks.batch import read_summary

    for i in range(3, 8):  # more files, each slow enough (SIRT) to cancel in the middle
        (folder / f"scan_{i}.h5").write_bytes((folder / "scan_0.h5").read_bytes())
    viewer = make_napari_viewer()
    widget = dock(viewer, "Batch")
    widget.input_edit.setText(str(folder))
    widget.output_edit.setText(str(tmp_path / "out"))
    widget.params.algorithm.value = "sirt"
    widget.params.n_iter.value = 300
    widget.params.device.value = "cpu"
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.status(0) == "ok", timeout=60_000)
    widget.runner.cancel_button.click()
    assert wait_done(qtbot, widget.runner) == "cancelled"
    statuses = [widget.status(i) for i in range(8)]
    assert statuses[0] == "ok" and "cancelled" in statuses and not any(s.startswith("running") for s in statuses)
    qtbot.waitUntil(lambda: (tmp_path / "out" / "batch-summary.csv").exists(), timeout=10_000)
    summary = read_summary(tmp_path / "out" / "batch-summary.csv")
    assert "cancelled" in summary["status"] and not list((tmp_path / "out").glob(".*"))  # no temporary left
