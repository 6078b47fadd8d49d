"""Reconstruct widget: projections layer → volume, with a live one-slice preview.

Thin: angles, centre, filter and algorithm are collected here; the work is done by
:mod:`napari_tomoml.tasks.reconstruct` (preview slice, centre finding, centre check, the
volume), each in a worker thread.
Raw (un-normalised) projections are normalised on the way with the flats/darks the Load widget
or reader stored in ``layer.metadata``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..device import available_devices
from ..recon.filters import FILTERS
from ..tasks.reconstruct import (
    ALGORITHMS,
    center_check_steps,
    find_center_steps,
    preview_slice,
    reconstruct_raw_steps,
)
from ._layers import LayerCombo, add_or_update_image, is_projections, unique_name
from ._worker import TaskRunner, error_message, run_quiet

if TYPE_CHECKING:
    import napari

PREVIEW_LAYER = "reconstruction preview"
CENTRE_CHECK_LAYER = "centre check"
PREVIEW_DELAY_MS = 250


class ReconstructWidget(QWidget):
    """Pick a projections layer, set angles/centre/filter, preview one slice, reconstruct."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result_layer = None
        self._preview_worker = None
        self._preview_pending = False
        self._ready = False  # signals fired while the widgets are being built are ignored

        self.layer_combo = LayerCombo(napari_viewer, ndim=3, accept=is_projections)
        self.layer_combo.currentIndexChanged.connect(self._layer_changed)

        # angles
        self.angles_label = QLabel("")
        self.angles_label.setWordWrap(True)
        self.first_angle = QDoubleSpinBox()
        self.last_angle = QDoubleSpinBox()
        for spin in (self.first_angle, self.last_angle):
            spin.setRange(-3600.0, 3600.0)
            spin.setDecimals(3)
            spin.setSuffix("°")
            spin.valueChanged.connect(self._schedule_preview)
        self.first_angle.setValue(0.0)
        self.last_angle.setValue(180.0)
        angle_row = QHBoxLayout()
        angle_row.addWidget(QLabel("first"))
        angle_row.addWidget(self.first_angle)
        angle_row.addWidget(QLabel("last"))
        angle_row.addWidget(self.last_angle)
        self.angle_box = QWidget()
        self.angle_box.setLayout(angle_row)
        angle_row.setContentsMargins(0, 0, 0, 0)

        self.normalise_check = QCheckBox("Normalise raw counts (flats, darks, −log)")
        self.normalise_check.toggled.connect(self._schedule_preview)

        # centre
        self.centre_spin = QDoubleSpinBox()
        self.centre_spin.setDecimals(2)
        self.centre_spin.setSingleStep(0.5)
        self.centre_spin.setRange(-1e5, 1e5)
        self.centre_spin.setSuffix(" px")
        self.centre_spin.setToolTip("Rotation centre in detector pixels from the left edge")
        self.centre_spin.valueChanged.connect(self._schedule_preview)
        self.find_centre_button = QPushButton("Find centre")
        self.find_centre_button.clicked.connect(self.find_centre)
        centre_row = QHBoxLayout()
        centre_row.addWidget(self.centre_spin, 1)
        centre_row.addWidget(self.find_centre_button)

        self.filter_combo = QComboBox()
        self.filter_combo.addItems(FILTERS)
        self.filter_combo.currentTextChanged.connect(self._schedule_preview)

        # preview
        self.row_spin = QSpinBox()
        self.row_spin.setToolTip("Detector row shown in the live preview")
        self.row_spin.valueChanged.connect(self._schedule_preview)
        self.live_check = QCheckBox("Live preview")
        self.live_check.setChecked(True)
        self.live_check.toggled.connect(self._schedule_preview)
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.row_spin, 1)
        preview_row.addWidget(self.live_check)
        self.preview_status = QLabel("")
        self.preview_status.setWordWrap(True)

        self.check_half_range = QDoubleSpinBox()
        self.check_half_range.setRange(0.5, 500)
        self.check_half_range.setValue(5.0)
        self.check_half_range.setPrefix("± ")
        self.check_half_range.setSuffix(" px")
        self.check_step = QDoubleSpinBox()
        self.check_step.setRange(0.1, 50)
        self.check_step.setValue(1.0)
        self.check_step.setPrefix("step ")
        self.centre_check_button = QPushButton("Centre check")
        self.centre_check_button.setToolTip(
            "Reconstruct the preview row at a range of centres into a stack; scroll through it "
            "and pick the sharpest slice"
        )
        self.centre_check_button.clicked.connect(self.centre_check)
        check_row = QHBoxLayout()
        check_row.addWidget(self.check_half_range)
        check_row.addWidget(self.check_step)
        check_row.addWidget(self.centre_check_button)

        # volume
        self.algorithm_combo = QComboBox()
        self.algorithm_combo.addItems(ALGORITHMS)
        self.algorithm_combo.currentTextChanged.connect(self._algorithm_changed)
        self.iter_spin = QSpinBox()
        self.iter_spin.setRange(1, 10000)
        self.iter_spin.setValue(50)
        self.iter_spin.setPrefix("iterations ")
        self.iter_spin.setEnabled(False)
        algo_row = QHBoxLayout()
        algo_row.addWidget(self.algorithm_combo, 1)
        algo_row.addWidget(self.iter_spin)
        self.row_start = QSpinBox()
        self.row_stop = QSpinBox()
        rows_row = QHBoxLayout()
        rows_row.addWidget(self.row_start)
        rows_row.addWidget(QLabel("to"))
        rows_row.addWidget(self.row_stop)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())

        self.reconstruct_button = QPushButton("Reconstruct")
        self.reconstruct_button.clicked.connect(self.reconstruct)
        self.runner = TaskRunner(self)

        setup = QFormLayout()
        setup.addRow("Projections", self.layer_combo)
        setup.addRow("Angles", self.angles_label)
        setup.addRow("", self.angle_box)
        setup.addRow(self.normalise_check)
        setup.addRow("Centre", centre_row)
        setup.addRow("Filter", self.filter_combo)

        preview_box = QGroupBox("Preview (one row)")
        preview_form = QFormLayout(preview_box)
        preview_form.addRow("Row", preview_row)
        preview_form.addRow("Centre check", check_row)
        preview_form.addRow(self.preview_status)

        volume_box = QGroupBox("Volume")
        volume_form = QFormLayout(volume_box)
        volume_form.addRow("Algorithm", algo_row)
        volume_form.addRow("Rows", rows_row)
        volume_form.addRow("Device", self.device_combo)

        layout = QVBoxLayout(self)
        layout.addLayout(setup)
        layout.addWidget(preview_box)
        layout.addWidget(volume_box)
        layout.addWidget(self.reconstruct_button)
        layout.addWidget(self.runner)
        layout.addStretch(1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.update_preview)
        self._ready = True
        self._layer_changed()

    # ------------------------------------------------------------------ parameters
    def layer(self) -> Any | None:
        return self.layer_combo.layer()

    def theta(self) -> np.ndarray:
        """Angles in radians: the layer's ``theta`` metadata, else the first/last angle boxes."""
        layer = self.layer()
        if layer is None:
            return np.zeros(0)
        n = layer.data.shape[0]
        theta = layer.metadata.get("theta")
        if theta is not None and len(theta) == n:
            return np.asarray(theta, dtype=np.float64)
        return np.radians(np.linspace(self.first_angle.value(), self.last_angle.value(), n))

    def centre(self) -> float:
        return float(self.centre_spin.value())

    def rows(self) -> slice:
        return slice(self.row_start.value(), self.row_stop.value())

    def _normalise(self) -> bool:
        return self.normalise_check.isEnabled() and self.normalise_check.isChecked()

    def _meta(self) -> dict[str, Any]:
        layer = self.layer()
        return dict(layer.metadata) if layer is not None else {}

    def _layer_changed(self, *_: Any) -> None:
        if not self._ready:
            return
        layer = self.layer()
        has_layer = layer is not None
        for w in (self.find_centre_button, self.centre_check_button, self.reconstruct_button):
            w.setEnabled(has_layer)
        if not has_layer:
            self.angles_label.setText("Add or load a projections layer (angles, rows, cols).")
            self.angle_box.setVisible(False)
            return
        n_angles, n_rows, n_cols = (int(s) for s in layer.data.shape)
        meta = layer.metadata
        theta = meta.get("theta")
        if theta is not None and len(theta) == n_angles:
            deg = np.degrees(np.asarray(theta, dtype=np.float64))
            self.angles_label.setText(f"{n_angles} angles, {deg.min():.1f}° … {deg.max():.1f}° (from the layer)")
            self.angle_box.setVisible(False)
        else:
            self.angles_label.setText(f"{n_angles} angles, not in the layer: give the range")
            self.angle_box.setVisible(True)
            self.last_angle.setValue(180.0 * (n_angles - 1) / max(n_angles, 1))
        raw = meta.get("normalized") is False
        self.normalise_check.setEnabled(raw)
        self.normalise_check.setChecked(raw)
        for spin in (self.row_spin, self.row_start, self.row_stop):
            spin.blockSignals(True)
        self.row_spin.setRange(0, n_rows - 1)
        self.row_spin.setValue(n_rows // 2)
        self.row_start.setRange(0, n_rows - 1)
        self.row_start.setValue(0)
        self.row_stop.setRange(1, n_rows)
        self.row_stop.setValue(n_rows)
        for spin in (self.row_spin, self.row_start, self.row_stop):
            spin.blockSignals(False)
        centre = meta.get("center")
        if not isinstance(centre, (int, float, np.floating)) or not 0 <= centre <= n_cols:
            centre = n_cols / 2.0  # the detector middle, the reconstructors' own default
        self.centre_spin.blockSignals(True)
        self.centre_spin.setRange(0.0, float(n_cols))
        self.centre_spin.setValue(float(centre))
        self.centre_spin.blockSignals(False)
        self._schedule_preview()

    def _algorithm_changed(self, name: str) -> None:
        self.iter_spin.setEnabled(name != "fbp")
        self.filter_combo.setEnabled(True)

    # ------------------------------------------------------------------ preview
    def _schedule_preview(self, *_: Any) -> None:
        if self._ready and self.live_check.isChecked() and self.layer() is not None:
            self._timer.start()

    def _preview_translate(self, layer: Any) -> tuple[float, float]:
        """Place previews to the right of the projections so both stay visible."""
        extent = layer.extent.world
        return (float(extent[0][-2]), float(extent[1][-1]) + 0.05 * float(extent[1][-1] - extent[0][-1]))

    def update_preview(self):
        """Reconstruct the preview row now (in a worker); returns the worker, or None."""
        layer = self.layer()
        if layer is None:
            return None
        if self._preview_worker is not None:
            self._preview_pending = True
            return None
        args = (
            layer.data,
            int(self.row_spin.value()),
            self.theta(),
            self.centre(),
            self.filter_combo.currentText(),
            self._meta(),
            self._normalise(),
        )
        translate = self._preview_translate(layer)
        params = {"row": args[1], "center": args[3], "filter_name": args[4], "source": layer.name}
        self.preview_status.setText("previewing…")

        def show(image: np.ndarray) -> None:
            lo, hi = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
            if not hi > lo:
                hi = lo + 1.0
            add_or_update_image(
                self.viewer,
                PREVIEW_LAYER,
                image,
                colormap="gray",
                contrast_limits=(float(lo), float(hi)),
                translate=translate,
                metadata={"task": "preview", **params},
            )
            self.preview_status.setText(
                f"row {params['row']}, centre {params['center']:.2f} px, {params['filter_name']} filter"
            )

        def failed(exc: BaseException) -> None:
            self.preview_status.setText(f"preview failed: {error_message(exc)}")

        self._preview_worker = run_quiet(
            preview_slice, *args, on_result=show, on_error=failed, on_finish=self._preview_done, owner=self
        )
        return self._preview_worker

    def _preview_done(self) -> None:
        self._preview_worker = None
        if self._preview_pending:
            self._preview_pending = False
            self._schedule_preview()

    # ------------------------------------------------------------------ actions
    def _start(self, *args: Any, **kwargs: Any):
        if self.runner.running:
            from napari.utils.notifications import show_info

            show_info("napari-tomoml: a task is running; wait for it or press Cancel")
            return None
        return self.runner.run(*args, **kwargs)

    def find_centre(self):
        layer = self.layer()
        if layer is None:
            return None

        def done(centre: float) -> None:
            self.centre_spin.setValue(centre)

        return self._start(
            find_center_steps,
            layer.data,
            int(self.row_spin.value()),
            self.theta(),
            self._meta(),
            self._normalise(),
            on_result=done,
            description="finding centre",
        )

    def centre_check(self):
        layer = self.layer()
        if layer is None:
            return None
        half, step = self.check_half_range.value(), self.check_step.value()
        centres = np.arange(self.centre() - half, self.centre() + half + step / 2, step)
        translate = self._preview_translate(layer)
        row = int(self.row_spin.value())

        def show(result: tuple) -> None:
            stack, used = result
            name = CENTRE_CHECK_LAYER
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            lo, hi = np.percentile(stack, (0.5, 99.5))
            layer_ = self.viewer.add_image(
                stack,
                name=name,
                colormap="gray",
                contrast_limits=(float(lo), float(hi) if hi > lo else float(lo) + 1.0),
                translate=(0.0, *translate),
                metadata={"task": "centre check", "centers": used, "row": row, "source": layer.name},
            )
            if PREVIEW_LAYER in self.viewer.layers:
                self.viewer.layers[PREVIEW_LAYER].visible = False
            self.preview_status.setText(
                f"centre check: slice i of '{name}' uses centre {used[0]:.2f} + i × {step:g} px"
            )
            self.viewer.layers.selection.active = layer_

        return self._start(
            center_check_steps,
            layer.data,
            row,
            self.theta(),
            centres,
            self.filter_combo.currentText(),
            self._meta(),
            self._normalise(),
            on_result=show,
            description="centre check",
        )

    def options(self) -> dict[str, Any]:
        """The keyword arguments given to ``reconstruct_steps``."""
        algorithm = self.algorithm_combo.currentText()
        opts: dict[str, Any] = {
            "algorithm": algorithm,
            "center": self.centre(),
            "filter_name": self.filter_combo.currentText(),
            "device": self.device_combo.currentText(),
        }
        if algorithm != "fbp":
            opts["n_iter"] = int(self.iter_spin.value())
        return opts

    def reconstruct(self):
        """Reconstruct the chosen rows into a new image layer; returns the worker (or None)."""
        layer = self.layer()
        if layer is None:
            from napari.utils.notifications import show_error

            show_error("napari-tomoml: choose a projections layer first")
            return None
        rows = self.rows()
        if rows.stop <= rows.start:
            from napari.utils.notifications import show_error

            show_error(f"napari-tomoml: rows {rows.start} to {rows.stop} select nothing")
            return None
        options = self.options()
        source = layer.name

        def add(result: Any) -> None:
            volume, meta = result if isinstance(result, tuple) else (result, {})
            metadata = dict(meta or {})
            parameters = {**options, **dict(metadata.get("parameters") or {})}
            parameters["rows"] = [rows.start, rows.stop]  # detector rows of the source layer
            metadata.update(task="reconstruct", kind="volume", source=source, parameters=parameters)
            metadata.pop("theta", None)  # a volume has no angles; keep it out of other widgets' way
            vol = np.asarray(volume)
            lo, hi = np.percentile(vol[vol.shape[0] // 2], (0.5, 99.5)) if vol.size else (0.0, 1.0)
            self.result_layer = self.viewer.add_image(
                vol,
                name=unique_name(self.viewer, f"{source} {options['algorithm']}"),
                colormap="gray",
                contrast_limits=(float(lo), float(hi) if hi > lo else float(lo) + 1.0),
                translate=(float(rows.start), 0.0, 0.0),
                metadata=metadata,
            )
            for name in (source, PREVIEW_LAYER, CENTRE_CHECK_LAYER):
                if name in self.viewer.layers:
                    self.viewer.layers[name].visible = False
            self.viewer.layers.selection.active = self.result_layer
            self.viewer.reset_view()

        self.reconstruct_button.setEnabled(False)
        return self._start(
            reconstruct_raw_steps,
            layer.data,
            rows,
            self.theta(),
            self._meta(),
            self._normalise(),
            options,
            on_result=add,
            on_finish=lambda _s: self.reconstruct_button.setEnabled(True),
            description=f"reconstructing ({options['algorithm']})",
        )
