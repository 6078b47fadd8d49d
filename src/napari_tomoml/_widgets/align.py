"""Align widget: a projections layer → shifts (plotted against angle) → an aligned layer.

Thin: :func:`napari_tomoml.tasks.align.align_steps` finds the shifts in a worker thread (method
menu: joint, xcorr, learned), :func:`~napari_tomoml.tasks.align.apply_shifts` makes the aligned
stack and :func:`~napari_tomoml.tasks.align.row_before_after` reconstructs one row before and
after, shown side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..device import available_devices
from ..tasks.align import METHODS, align_steps, apply_shifts, row_before_after
from ..tasks.registry import default
from ._layers import LayerCombo, is_projections, show_result, unique_name
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari


def _aligned_and_rows(projections, shifts, theta, row, center, device):
    aligned = apply_shifts(projections, shifts, device=device)
    before, after = row_before_after(projections, shifts, theta, row=row, center=center, device=device)
    return aligned, before, after


class AlignWidget(QWidget):
    """Pick projections and a method; find shifts, plot them, apply them."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.shifts: np.ndarray | None = None
        self.meta: dict[str, Any] = {}
        self.aligned_layer = None
        self.compare_layer = None

        self.layer_combo = LayerCombo(napari_viewer, ndim=3, accept=is_projections)
        self.layer_combo.currentIndexChanged.connect(self._layer_changed)
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHODS))
        self.method_combo.setCurrentText(default("align", "method"))
        self.center_spin = QDoubleSpinBox()
        self.center_spin.setRange(0, 100_000)
        self.center_spin.setDecimals(2)
        self.refine_check = QCheckBox("refine centre (joint)")
        self.refine_check.setChecked(True)
        self.last_angle = QDoubleSpinBox()
        self.last_angle.setRange(1, 720)
        self.last_angle.setValue(180)
        self.last_angle.setSuffix("° (no angles in layer)")
        self.row_spin = QSpinBox()
        self.row_spin.setRange(0, 100_000)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_combo.setCurrentText(default("align", "device"))

        self.align_button = QPushButton("Find shifts")
        self.align_button.clicked.connect(self.align)
        self.apply_button = QPushButton("Apply → aligned layer")
        self.apply_button.setEnabled(False)
        self.apply_button.clicked.connect(self.apply)
        self.runner = TaskRunner(self)

        import pyqtgraph as pg

        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "angle (°)")
        self.plot.setLabel("left", "shift (px)")
        self.plot.addLegend()
        self.plot.setMinimumHeight(160)
        self.dx_curve = self.plot.plot([], [], pen=pg.mkPen("c", width=2), name="dx")
        self.dy_curve = self.plot.plot([], [], pen=pg.mkPen("m", width=2), name="dy")

        form = QFormLayout()
        form.addRow("Projections", self.layer_combo)
        form.addRow("Method", self.method_combo)
        form.addRow("Centre (px)", self.center_spin)
        form.addRow("", self.refine_check)
        form.addRow("Last angle", self.last_angle)
        form.addRow("Row to compare", self.row_spin)
        form.addRow("Device", self.device_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.align_button)
        buttons.addWidget(self.apply_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.runner)
        layout.addWidget(self.plot)
        layout.addStretch(1)
        self._layer_changed()

    # ------------------------------------------------------------------ inputs
    def _layer_changed(self, *_: Any) -> None:
        layer = self.layer_combo.layer()
        if layer is None:
            return
        _, rows, cols = layer.data.shape
        center = layer.metadata.get("center")
        self.center_spin.setValue(float(center) if center is not None else cols / 2)
        self.row_spin.setMaximum(rows - 1)
        self.row_spin.setValue(rows // 2)

    def theta(self) -> np.ndarray:
        """Angles in radians: the layer's ``theta`` metadata, else evenly to the last angle."""
        layer = self.layer_combo.layer()
        n = layer.data.shape[0]
        theta = layer.metadata.get("theta")
        if theta is not None and len(theta) == n:
            return np.asarray(theta, dtype=np.float64)
        return np.radians(np.linspace(0, self.last_angle.value(), n, endpoint=False))

    # ------------------------------------------------------------------ actions
    def task_options(self) -> dict[str, Any]:
        """This widget's settings under the ``align`` task's option names (registry)."""
        return {"method": self.method_combo.currentText(), "device": self.device_combo.currentText()}

    def align(self):
        from napari.utils.notifications import show_error

        layer = self.layer_combo.layer()
        if layer is None:
            show_error("napari-tomoml: choose a projections layer to align")
            return None
        if self.runner.running:
            return None
        method = self.method_combo.currentText()
        options: dict[str, Any] = {}
        if method == "joint":
            options["refine_center"] = self.refine_check.isChecked()
        theta = self.theta()

        def done(result: Any) -> None:
            self.shifts, self.meta = result
            self.meta["theta"] = theta
            self.meta["source"] = layer.name
            self.plot_shifts(theta, self.shifts)
            self.apply_button.setEnabled(True)

        return self.runner.run(
            align_steps,
            np.asarray(layer.data, dtype=np.float32),
            theta,
            method=method,
            center=self.center_spin.value() if method == "joint" else None,
            device=self.device_combo.currentText(),
            **options,
            on_result=done,
            description=f"aligning ({method})",
        )

    def plot_shifts(self, theta: np.ndarray, shifts: np.ndarray) -> None:
        deg = np.degrees(theta)
        self.dx_curve.setData(deg, shifts[:, 1])
        self.dy_curve.setData(deg, shifts[:, 0])

    def apply(self):
        layer = self.layer_combo.layer()
        if layer is None or self.shifts is None or self.runner.running:
            return None
        shifts, theta, meta = self.shifts, self.meta["theta"], dict(self.meta)
        center = self.center_spin.value()
        row = self.row_spin.value()

        def add(result: Any) -> None:
            aligned, before, after = result
            metadata = {k: v for k, v in meta.items() if k not in ("card", "updates", "theta")}
            metadata.update({"task": "align", "kind": "projections", "theta": list(map(float, theta)),
                             "center": center, "shifts_dy_dx": shifts.tolist()})
            self.aligned_layer = show_result(
                self.viewer, aligned, name=unique_name(self.viewer, f"{layer.name} aligned"),
                source=layer, colormap="gray", metadata=metadata,
            )
            gap = np.full((before.shape[0], 4), np.nan, np.float32)
            pair = np.concatenate([before, gap, after], axis=1)
            self.compare_layer = show_result(
                self.viewer, np.nan_to_num(pair, nan=float(np.nanmin(pair))),
                name=f"row {row}: before | after", colormap="gray", frame=False, select=False,
                metadata={"task": "align comparison", "kind": "image", "row": row, "source": layer.name},
            )
            self.viewer.layers.selection.active = self.aligned_layer

        return self.runner.run(
            _aligned_and_rows, np.asarray(layer.data, dtype=np.float32), shifts, theta, row, center,
            self.device_combo.currentText(), on_result=add, description="applying shifts",
        )
