"""Batch widget: run a registered task over a folder of scans, with a live table of the files.

Thin: the task menu and its parameters come from :mod:`napari_tomoml.tasks.registry`, the work
is :func:`napari_tomoml.tasks.batch.batch_steps` in the shared worker bridge (Cancel stops it
between files or within one), and a double-click on a finished row opens its output as a layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..progress import Progress
from ..tasks.batch import batch_steps, find_inputs, plan_outputs
from ..tasks.registry import get_task, task_names
from ._layers import show_result
from ._worker import TaskRunner, error_message

COLUMNS = ("file", "status", "seconds", "error")


class BatchWidget(QWidget):
    """Folder or glob → task (with its parameters) → output folder; a row per file."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.outputs: list[Path] = []
        self.input_edit = QLineEdit()
        self.input_edit.setPlaceholderText("folder of scans, or a pattern like /data/night/*.h5")
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("folder for the results")
        self.task_combo = QComboBox()
        self.task_combo.addItems(task_names())
        self.resume_check = QCheckBox("skip files whose output exists (resume)")
        self.resume_check.setChecked(True)
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, 64)
        self.workers_spin.setToolTip("worker processes (a local Dask cluster when more than 1)")
        self.run_button = QPushButton("Run batch")
        self.runner = TaskRunner(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setToolTip("double-click a finished file to open its result")
        self.params = None  # magicgui Container of the chosen task's parameters
        self._steps = None  # the running batch generator

        form = QFormLayout()
        form.addRow("Inputs", _with_browse(self.input_edit, self._browse_input))
        form.addRow("Task", self.task_combo)
        form.addRow("Output folder", _with_browse(self.output_edit, self._browse_output))
        form.addRow("Workers", self.workers_spin)
        self._params_box = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(self._params_box)
        layout.addWidget(self.resume_check)
        layout.addWidget(self.run_button)
        layout.addWidget(self.runner)
        layout.addWidget(self.table, 1)

        self.task_combo.currentTextChanged.connect(self._task_changed)
        self.run_button.clicked.connect(self.run)
        self.table.cellDoubleClicked.connect(self.open_row)
        self._task_changed(self.task_combo.currentText())

    # ------------------------------------------------------------------ parameters
    def _task_changed(self, name: str) -> None:
        if self.params is not None:
            self._params_box.removeWidget(self.params.native)
            self.params.native.deleteLater()
        self.params = get_task(name).widgets()
        self._params_box.addWidget(self.params.native)

    def options(self) -> dict[str, Any]:
        return get_task(self.task_combo.currentText()).widget_values(self.params)

    def _browse_input(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of scans")
        if folder:
            self.input_edit.setText(folder)

    def _browse_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder")
        if folder:
            self.output_edit.setText(folder)

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """List the files (a usage error is a notification), then run the batch in a worker."""
        spec = get_task(self.task_combo.currentText())
        inputs, out_dir = self.input_edit.text().strip(), Path(self.output_edit.text().strip())
        try:
            if not inputs or not str(out_dir).strip(". "):
                raise ValueError("choose the inputs and an output folder")
            options = spec.resolve(self.options())
            sources = find_inputs(inputs, exclude=[out_dir])
            self.outputs = plan_outputs(spec, sources, out_dir, options)
        except (ValueError, OSError) as exc:
            from . import _worker  # its show_error, as every widget reports

            _worker.show_error(error_message(exc))
            return
        self.table.setRowCount(len(sources))
        for i, src in enumerate(sources):
            self._set_row(i, [src.name, "waiting", "", ""])
        # kept here so that a cancelled run is closed at once: its summary written, its temporary removed
        self._steps = batch_steps(spec, inputs, out_dir, options=options, resume=self.resume_check.isChecked(),
                                  workers=self.workers_spin.value())
        self.runner.run(lambda steps: steps, self._steps, on_progress=self._on_progress, on_finish=self._on_finish,
                        description=f"batch {spec.name}")

    def _set_row(self, i: int, values: list[str]) -> None:
        for j, value in enumerate(values):
            if value is not None:
                self.table.setItem(i, j, QTableWidgetItem(str(value)))

    def _on_progress(self, p: Progress) -> None:
        i = p.data.get("index")
        if i is None or i >= self.table.rowCount():
            return
        row = p.data.get("row")
        if row is not None:
            self._set_row(i, [None, row["status"], f"{row['seconds']:.2f}", row["error"]])
        elif "file_done" in p.data:
            total = max(int(p.data["file_total"]), 1)
            self._set_row(i, [None, f"running {100 * int(p.data['file_done']) // total}%", None, None])

    def _on_finish(self, status: str) -> None:
        if self._steps is not None:  # the worker has stopped: nothing runs the generator now
            self._steps.close()
            self._steps = None
        if status == "ok":
            return
        for i in range(self.table.rowCount()):  # what never finished is not done
            item = self.table.item(i, 1)
            if item is not None and item.text() not in ("ok", "skipped", "failed"):
                self._set_row(i, [None, "cancelled" if status == "cancelled" else "not run", None, None])

    def status(self, i: int) -> str:
        item = self.table.item(i, 1)
        return item.text() if item is not None else ""

    # ------------------------------------------------------------------ results
    def open_row(self, i: int, _column: int = 0) -> Any:
        """Open the output of row ``i`` as a layer (finished rows only); returns the layer."""
        if self.status(i) not in ("ok", "skipped") or i >= len(self.outputs):
            show_info("napari-tomoml: this file has no result yet")
            return None
        out = self.outputs[i]
        if out.suffix == ".csv":
            show_info(f"napari-tomoml: {out.name} is a table; open it in a spreadsheet")
            return None
        from ..io.volume import read_volume

        volume = read_volume(out)
        return show_result(self.viewer, volume.data, name=out.stem, metadata=volume.metadata)


def _with_browse(edit: QLineEdit, browse: Any) -> QWidget:
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    button = QPushButton("…")
    button.setMaximumWidth(32)
    button.clicked.connect(browse)
    row.addWidget(edit, 1)
    row.addWidget(button)
    return box
