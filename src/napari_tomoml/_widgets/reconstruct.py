"""Reconstruct widget: projections layer → volume, with a live one-slice preview.

Thin: angles, centre, filter and algorithm are collected here; the work is done by
:mod:`napari_tomoml.tasks.reconstruct` (preview slice, centre finding, centre check, the
volume), each in a worker thread.
Raw (un-normalised) projections are normalised on the way with the flats/darks the Load widget
or reader stored in ``layer.metadata``. Every result lands in view through
:func:`~._layers.show_result`; anything clamped or guessed (a centre off the detector, angles
not in the layer, a centre check too fine) is shown as a warning and kept in the result's
``metadata["warnings"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
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
    DEFAULT_ITERATIONS,
    MAX_CENTER_CHECK_SLICES,
    center_check_bytes,
    center_check_steps,
    find_center_steps,
    plan_center_check,
    preview_slice,
    reconstruct_raw_steps,
)
from ..tasks.registry import default
from ._layers import LayerCombo, is_projections, projections_score, show_result, unique_name
from ._worker import TaskRunner, error_message, run_quiet
from .reconstruct_options import BeamlineOptions

if TYPE_CHECKING:
    import napari

PREVIEW_LAYER = "reconstruction preview"
CENTRE_CHECK_LAYER = "centre check"
PREVIEW_DELAY_MS = 250
CENTER_CHECK_MEMORY = 1 << 30  # bytes a centre-check stack may take; more slices are refused


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f} MB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.1f} GB"


class ReconstructWidget(QWidget):
    """Pick a projections layer, set angles/centre/filter, preview one slice, reconstruct."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result_layer = None
        self._preview_worker = None
        self._preview_pending = False
        self._ready = False  # signals fired while the widgets are being built are ignored

        self.layer_combo = LayerCombo(napari_viewer, ndim=3, accept=is_projections, prefer=projections_score)
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
        self.filter_combo.setCurrentText(default("reconstruct", "filter_name"))
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
        self.check_half_range.setRange(0.5, 5000)
        self.check_half_range.setValue(5.0)
        self.check_half_range.setPrefix("± ")
        self.check_half_range.setSuffix(" px")
        self.check_step = QDoubleSpinBox()
        self.check_step.setRange(0.01, 50)
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
        self.algorithm_combo.setCurrentText(default("reconstruct", "algorithm"))
        self.algorithm_combo.currentTextChanged.connect(self._algorithm_changed)
        self.iter_spin = QSpinBox()
        self.iter_spin.setRange(1, 10000)
        algorithm = self.algorithm_combo.currentText()
        self.iter_spin.setValue(DEFAULT_ITERATIONS.get(algorithm, DEFAULT_ITERATIONS["sirt"]))
        self.iter_spin.setPrefix("iterations ")
        self.iter_spin.setEnabled(algorithm != "fbp")
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
        self.device_combo.setCurrentText(default("reconstruct", "device"))

        self.beamline = BeamlineOptions()
        self.reconstruct_button = QPushButton("Reconstruct")
        self.reconstruct_button.clicked.connect(self.reconstruct)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the last reconstruction (TIFF, HDF5 or zarr, with its provenance)")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._save_dialog)
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
        volume_form.addRow(self.beamline)

        buttons = QHBoxLayout()
        buttons.addWidget(self.reconstruct_button, 1)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(setup)
        layout.addWidget(preview_box)
        layout.addWidget(volume_box)
        layout.addLayout(buttons)
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
        return self._theta_and_warnings()[0]

    def _theta_and_warnings(self) -> tuple[np.ndarray, list[str]]:
        layer = self.layer()
        if layer is None:
            return np.zeros(0), []
        n = layer.data.shape[0]
        theta = layer.metadata.get("theta")
        if theta is not None and len(theta) == n:
            return np.asarray(theta, dtype=np.float64), []
        first, last = self.first_angle.value(), self.last_angle.value()
        note = f"angles not in the layer: assumed {n} evenly spaced from {first:.1f}° to {last:.1f}°"
        return np.radians(np.linspace(first, last, n)), [note]

    def centre(self) -> float:
        """The rotation centre used: the typed value, clamped to the detector."""
        return self._centre_and_warnings()[0]

    def _centre_and_warnings(self) -> tuple[float, list[str]]:
        typed = float(self.centre_spin.value())
        layer = self.layer()
        if layer is None:
            return typed, []
        n_cols = float(layer.data.shape[-1])
        used = min(max(typed, 0.0), n_cols)
        if used != typed:
            return used, [f"centre {typed:.2f} px lies off the detector (0 to {n_cols:.0f} px): clamped to {used:.2f} px"]
        return used, []

    def warnings(self) -> list[str]:
        """What the current settings clamp or guess (shown with, and stored in, each result)."""
        return self._theta_and_warnings()[1] + self._centre_and_warnings()[1]

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
        note = self.beamline.layer_changed(dict(meta), self.theta())
        self.angles_label.setToolTip(note or "")
        if note:
            self.angles_label.setText(self.angles_label.text() + " — 360° scan")
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
        # a wide range: a value off the detector is clamped with a warning, not silently
        self.centre_spin.setRange(-10.0 * n_cols, 10.0 * n_cols)
        self.centre_spin.setValue(float(centre))
        self.centre_spin.blockSignals(False)
        self._schedule_preview()

    def _algorithm_changed(self, name: str) -> None:
        self.iter_spin.setEnabled(name != "fbp")
        if name in DEFAULT_ITERATIONS:
            self.iter_spin.setValue(DEFAULT_ITERATIONS[name])
        self.beamline.algorithm_changed(name)

    # ------------------------------------------------------------------ preview
    def _schedule_preview(self, *_: Any) -> None:
        if self._ready and self.live_check.isChecked() and self.layer() is not None:
            self._timer.start()

    def _preview_translate(self, layer: Any) -> tuple[float, float]:
        """Place previews to the right of the projections so both stay visible."""
        extent = layer.extent.world
        return (float(extent[0][-2]), float(extent[1][-1]) + 0.05 * float(extent[1][-1] - extent[0][-1]))

    def update_preview(self):
        """Reconstruct the preview row now (in a worker); returns the worker, or None.

        The preview applies the pre-processing too (phase retrieval, rings, 360° stitch), so what
        it shows is what Reconstruct will make.
        """
        layer = self.layer()
        if layer is None:
            return None
        if self._preview_worker is not None:
            self._preview_pending = True
            return None
        row = int(self.row_spin.value())
        centre = self.centre()
        filter_name = self.filter_combo.currentText()
        prepare = self.beamline.prepare()
        translate = self._preview_translate(layer)
        params = {"row": row, "center": centre, "filter_name": filter_name, "source": layer.name}
        warnings = self.warnings()
        self.preview_status.setText("previewing…")
        if prepare:
            func, args = self._prepared_preview, (layer.data, row, self.theta(), centre, filter_name, prepare)
        else:
            func, args = preview_slice, (layer.data, row, self.theta(), centre, filter_name)
        args = (*args, self._meta(), self._normalise())

        def show(image: np.ndarray) -> None:
            first = PREVIEW_LAYER not in self.viewer.layers
            preview = show_result(
                self.viewer,
                image,
                name=PREVIEW_LAYER,
                colormap="gray",
                translate=translate,
                scale=tuple(layer.scale[-2:]),
                metadata={"task": "preview", **params, "prepare": prepare},
                frame=False,
                select=False,
            )
            if first:  # frame the projections and the preview beside them, once
                self.viewer.reset_view(layers=[layer, preview] if layer in self.viewer.layers else [preview])
            self.preview_status.setText(
                f"row {row}, centre {centre:.2f} px, {filter_name} filter"
                + (f"; {'; '.join(warnings)}" if warnings else "")
            )

        def failed(exc: BaseException) -> None:
            self.preview_status.setText(f"preview failed: {error_message(exc)}")

        self._preview_worker = run_quiet(
            func, *args, on_result=show, on_error=failed, on_finish=self._preview_done, owner=self
        )
        return self._preview_worker

    @staticmethod
    def _prepared_preview(projections, row, theta, centre, filter_name, prepare, metadata, raw):
        """One pre-processed FBP row (a generator, so the worker can drop it when stale)."""
        volume, _ = yield from reconstruct_raw_steps(
            projections,
            slice(row, row + 1),
            theta,
            metadata,
            raw,
            {"algorithm": "fbp", "center": centre, "filter_name": filter_name, "device": "cpu", "prepare": prepare},
        )
        return volume[0]

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

    def plan_centre_check(self) -> tuple[np.ndarray, list[str]]:
        """The trial centres the Centre check button will use, bounded in count and memory."""
        layer = self.layer()
        n_cols = int(layer.data.shape[-1]) if layer is not None else 1
        by_memory = max(2, CENTER_CHECK_MEMORY // center_check_bytes(1, n_cols))
        return plan_center_check(
            self.centre(),
            self.check_half_range.value(),
            self.check_step.value(),
            n_cols,
            max_slices=min(MAX_CENTER_CHECK_SLICES, by_memory),
        )

    def centre_check(self):
        """Reconstruct the preview row at a range of centres into a stack, in the worker."""
        from napari.utils.notifications import show_error

        from ..errors import TomomlError

        layer = self.layer()
        if layer is None:
            return None
        try:
            centres, capped = self.plan_centre_check()
        except TomomlError as exc:
            show_error(f"napari-tomoml: {exc}")
            return None
        warnings = self.warnings() + capped
        n_cols = int(layer.data.shape[-1])
        size = _mb(center_check_bytes(len(centres), n_cols))
        row = int(self.row_spin.value())
        step = float(centres[1] - centres[0]) if len(centres) > 1 else 0.0
        source = layer.name
        scale = tuple(layer.scale[-2:])

        def show(result: tuple) -> None:
            stack, used = result
            shown = show_result(
                self.viewer,
                stack,
                name=CENTRE_CHECK_LAYER,
                colormap="gray",
                scale=(1.0, *scale),
                source=source,
                hide=[PREVIEW_LAYER],
                metadata={
                    "task": "centre check",
                    "kind": "centre check",
                    "centers": np.round(used, 4),
                    "row": row,
                    "source": source,
                    "warnings": warnings,
                },
            )
            self.viewer.dims.set_point(0, int(np.argmin(np.abs(used - self.centre()))))
            self.preview_status.setText(
                f"centre check: slice i of '{shown.name}' uses centre {used[0]:.2f} + i × {step:.2f} px "
                f"({len(used)} slices, {size})"
            )

        self.preview_status.setText(f"centre check: {len(centres)} slices, about {size}")
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
            description=f"centre check ({len(centres)} slices, {size})",
        )

    def options(self) -> dict[str, Any]:
        """The keyword arguments given to ``reconstruct_raw_steps``."""
        algorithm = self.algorithm_combo.currentText()
        layer = self.layer()
        n_cols = int(layer.data.shape[-1]) if layer is not None else 0
        opts: dict[str, Any] = {
            "algorithm": algorithm,
            "center": self.centre(),
            "filter_name": self.filter_combo.currentText(),
            "device": self.device_combo.currentText(),
            **self.beamline.solver(algorithm, n_cols),
        }
        if algorithm != "fbp":
            opts["n_iter"] = int(self.iter_spin.value())
        prepare = self.beamline.prepare()
        if prepare:
            opts["prepare"] = prepare
        return opts

    def task_options(self) -> dict[str, Any]:
        """This widget's settings under the ``reconstruct`` task's option names (registry)."""
        algorithm = self.algorithm_combo.currentText()
        return {"algorithm": algorithm, "filter_name": self.filter_combo.currentText(),
                "n_iter": None if algorithm == "fbp" else int(self.iter_spin.value()),
                "device": self.device_combo.currentText()}

    def result_name(self, source: str, options: dict[str, Any]) -> str:
        """``"<source> <method>"``, the method saying what made it (``tv 0.01``, ``+paganin``…)."""
        method = options["algorithm"]
        if method == "tv":
            method += f" {options.get('tv', 0.01):g}"
        elif method != "fbp":
            method += f" {options.get('n_iter')} it"
        extras = [k for k, key in (("paganin", "phase"), ("rings", "rings"), ("360", "stitch_360"))
                  if key in options.get("prepare", {})]
        return " ".join([source, method, *(f"+{e}" for e in extras)])

    def reconstruct(self):
        """Reconstruct the chosen rows into a new image layer; returns the worker (or None)."""
        from napari.utils.notifications import show_error

        layer = self.layer()
        if layer is None:
            show_error("napari-tomoml: choose a projections layer first")
            return None
        rows = self.rows()
        if rows.stop <= rows.start:
            show_error(f"napari-tomoml: rows {rows.start} to {rows.stop} select nothing")
            return None
        options = self.options()
        warnings = self.warnings()
        source = layer.name
        name = self.result_name(source, options)
        pixel = float(layer.scale[-1])

        def add(result: Any) -> None:
            volume, meta = result if isinstance(result, tuple) else (result, {})
            metadata = dict(meta or {})
            shown = {k: v for k, v in options.items() if k not in ("support", "prepare")}
            parameters = {**shown, **dict(metadata.get("parameters") or {})}
            parameters["rows"] = [rows.start, rows.stop]  # detector rows of the source layer
            metadata.update(task="reconstruct", kind="volume", source=source, parameters=parameters)
            if warnings:
                metadata["warnings"] = list(warnings)
            if pixel != 1.0:
                metadata["pixel_size_um"] = pixel
            metadata.pop("theta", None)  # a volume has no angles; keep it out of other widgets' way
            self.result_layer = show_result(
                self.viewer,
                np.asarray(volume),
                name=unique_name(self.viewer, name),
                colormap="gray",
                scale=(pixel, pixel, pixel),
                translate=(float(rows.start) * pixel, 0.0, 0.0),
                source=source,
                hide=[PREVIEW_LAYER, CENTRE_CHECK_LAYER],
                metadata=metadata,
            )
            self.save_button.setEnabled(True)

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

    # ------------------------------------------------------------------ save
    def _save_dialog(self) -> None:
        if self.result_layer is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the reconstruction", f"{self.result_layer.name}.tif",
            "TIFF stack (*.tif *.tiff);;HDF5 (*.h5 *.hdf5);;zarr (*.zarr)",
        )
        if path:
            self.save_result(path)

    def save_result(self, path: str) -> list[str]:
        """Write the last reconstruction with its provenance (never over an existing file)."""
        from ..errors import TomomlError
        from . import _worker

        show_error, show_info = _worker.show_error, _worker.show_info  # one place tests can watch
        if self.result_layer is None or self.result_layer not in self.viewer.layers:
            show_error("napari-tomoml: nothing to save yet: reconstruct first")
            return []
        try:
            written = self.result_layer.save(str(path), plugin="napari-tomoml")
        except TomomlError as exc:
            show_error(f"napari-tomoml: {exc}")
            return []
        except Exception as exc:  # napari wraps the writer's error
            show_error(f"napari-tomoml: {error_message(exc.__cause__ or exc)}")
            return []
        show_info(f"napari-tomoml: saved {', '.join(written)}")
        return written
