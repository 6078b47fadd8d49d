"""Train TomoGAN widget: noisy/clean volume pairs → a model file the Denoise widget can use.

Thin: :class:`~napari_tomoml.training.data.PairedVolumes` builds the pairs (from two layers or a
TomoGAN-layout HDF5 file), :func:`~napari_tomoml.training.tomogan.train_tomogan_steps` trains
(in a worker, yielding losses and validation PSNR that the widget plots live), and
:func:`~napari_tomoml.models.store.save_model` writes the model file. Stop ends training at the
next step and still saves the best weights seen in validation.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..device import available_devices
from ..progress import Progress
from ..tasks.train import train_and_save_steps
from ._layers import LayerCombo, clean_partner_score, is_volume, noisy_score
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

FROM_LAYERS = "Two layers (noisy, clean)"
FROM_HDF5 = "HDF5 file (train_ns/gt, test_ns/gt)"


# ---------------------------------------------------------------------------- live plot
class LossPlot(QWidget):
    """A small live plot of the training loss and the validation loss (log scale)."""

    COLOURS = {"train": QColor(90, 160, 255), "val": QColor(255, 170, 60)}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.series: dict[str, list[tuple[float, float]]] = {"train": [], "val": []}

    def clear(self) -> None:
        self.series = {"train": [], "val": []}
        self.update()

    def add(self, name: str, step: float, value: float) -> None:
        if value is not None and math.isfinite(value) and value > 0:
            self.series[name].append((float(step), math.log10(value)))
            self.update()

    X_LABEL = "training step"
    Y_LABEL = "loss (log scale)"

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = painter.fontMetrics()
        h = metrics.height()
        # room for the y tick labels and title on the left, x ticks and title below
        outer = self.rect().adjusted(4, 4, -4, -4)
        rect = outer.adjusted(h + metrics.horizontalAdvance("1e-0.0") + 6, h + 2, -4, -(2 * h + 4))
        grey, light = QColor(120, 120, 120), QColor(200, 200, 200)
        painter.setPen(QPen(grey))
        painter.drawRect(rect)
        painter.setPen(QPen(light))
        painter.drawText(outer.adjusted(0, 0, 0, 0), Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter,
                         self.X_LABEL)
        painter.save()
        painter.translate(outer.left() + h, rect.center().y())
        painter.rotate(-90)
        painter.drawText(-metrics.horizontalAdvance(self.Y_LABEL) // 2, 0, self.Y_LABEL)
        painter.restore()
        painter.drawText(outer.adjusted(h + 4, 0, 0, 0), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft,
                         "train ─ blue   validation ─ orange")
        points = [p for s in self.series.values() for p in s]
        if len(points) < 2:
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "no losses yet")
            return
        x0, x1, y0, y1 = self.bounds()
        # tick labels: the ends of each axis
        painter.drawText(rect.left() - metrics.horizontalAdvance(f"1e{y1:.1f}") - 3, rect.top() + h // 2,
                         f"1e{y1:.1f}")
        painter.drawText(rect.left() - metrics.horizontalAdvance(f"1e{y0:.1f}") - 3, rect.bottom(), f"1e{y0:.1f}")
        painter.drawText(rect.left(), rect.bottom() + h, f"{x0:g}")
        painter.drawText(rect.right() - metrics.horizontalAdvance(f"{x1:g}"), rect.bottom() + h, f"{x1:g}")
        for name, series in self.series.items():
            if not series:
                continue
            poly = QPolygonF(
                [
                    QPointF(rect.left() + (x - x0) / (x1 - x0) * rect.width(),
                            rect.bottom() - (y - y0) / (y1 - y0) * rect.height())
                    for x, y in series
                ]
            )
            painter.setPen(QPen(self.COLOURS[name], 1.5))
            painter.drawPolyline(poly)

    def bounds(self) -> tuple[float, float, float, float]:
        """Axis ranges ``(step0, step1, log10 loss0, log10 loss1)``, never empty."""
        points = [p for s in self.series.values() for p in s]
        xs, ys = [p[0] for p in points] or [0.0], [p[1] for p in points] or [0.0]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return x0, (x1 if x1 > x0 else x0 + 1), y0, (y1 if y1 > y0 else y0 + 1)


# ---------------------------------------------------------------------------- the widget
class TrainWidget(QWidget):
    """Train a TomoGAN denoiser on paired noisy/clean volumes, with live losses and Stop."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.saved_path: Path | None = None
        self._stop = threading.Event()

        self.source_combo = QComboBox()
        self.source_combo.addItems([FROM_LAYERS, FROM_HDF5])
        # defaults: the noisy input by name/metadata (low dose, noisy; never the ground truth), the
        # clean one paired with it by name (low dose → normal dose) or marked clean
        self.noisy_combo = LayerCombo(napari_viewer, ndim=None, accept=is_volume, prefer=noisy_score)
        self.clean_combo = LayerCombo(
            napari_viewer, ndim=None, accept=is_volume, prefer=clean_partner_score(self.noisy_combo.currentText)
        )
        self.noisy_combo.currentIndexChanged.connect(self.clean_combo.refresh)
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.0, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.2)
        self.val_fraction.setToolTip("Fraction of the slices (the last ones) held out for validation")
        layers_page = QWidget()
        layers_form = QFormLayout(layers_page)
        layers_form.setContentsMargins(0, 0, 0, 0)
        layers_form.addRow("Noisy", self.noisy_combo)
        layers_form.addRow("Clean", self.clean_combo)
        layers_form.addRow("Validation", self.val_fraction)
        self.hdf5_edit = QLineEdit()
        self.hdf5_edit.setPlaceholderText("dataset.h5 with train_ns, train_gt, test_ns, test_gt")
        hdf5_browse = QPushButton("…")
        hdf5_browse.clicked.connect(self._browse_hdf5)
        hdf5_page = QWidget()
        hdf5_row = QHBoxLayout(hdf5_page)
        hdf5_row.setContentsMargins(0, 0, 0, 0)
        hdf5_row.addWidget(self.hdf5_edit, 1)
        hdf5_row.addWidget(hdf5_browse)
        self.source_stack = QStackedWidget()
        self.source_stack.addWidget(layers_page)
        self.source_stack.addWidget(hdf5_page)
        self.source_combo.currentIndexChanged.connect(self.source_stack.setCurrentIndex)

        self.depth_combo = QComboBox()
        self.depth_combo.addItems(["1", "3", "5", "7"])
        self.depth_combo.setCurrentText("3")
        self.steps_spin = self._int_spin(1, 1_000_000, 1000)
        self.batch_spin = self._int_spin(1, 256, 8)
        self.crop_spin = self._int_spin(16, 1024, 64, step=8)
        self.val_every_spin = self._int_spin(1, 100_000, 50)
        self.lambda_mse = self._float_spin(1.0)
        self.lambda_adv = self._float_spin(1e-3)
        self.lambda_vgg = self._float_spin(0.0)
        self.vgg_edit = QLineEdit()
        self.vgg_edit.setPlaceholderText("VGG19 weights (.pth/.safetensors) for the perceptual loss")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.save_edit = QLineEdit()
        self.save_edit.setPlaceholderText("where to save the model (e.g. models/my-tomogan)")
        save_browse = QPushButton("…")
        save_browse.clicked.connect(self._browse_save)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_edit, 1)
        save_row.addWidget(save_browse)

        net_box = QGroupBox("Training")
        net = QFormLayout(net_box)
        net.addRow("Slices in (depth)", self.depth_combo)
        net.addRow("Steps", self.steps_spin)
        net.addRow("Batch / crop", self._pair(self.batch_spin, self.crop_spin))
        net.addRow("Validate every", self.val_every_spin)
        net.addRow("Loss weights: MSE", self.lambda_mse)
        net.addRow("adversarial", self.lambda_adv)
        net.addRow("perceptual (VGG)", self.lambda_vgg)
        net.addRow("", self.vgg_edit)
        net.addRow("Device", self.device_combo)

        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.runner = TaskRunner(self, cancel_text="Stop")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.plot = LossPlot()

        form = QFormLayout()
        form.addRow("Data", self.source_combo)
        form.addRow(self.source_stack)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(net_box)
        layout.addLayout(self._labelled("Save to", save_row))
        layout.addWidget(self.train_button)
        layout.addWidget(self.runner)
        layout.addWidget(self.plot)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

    # ------------------------------------------------------------------ small builders
    @staticmethod
    def _int_spin(lo: int, hi: int, value: int, step: int = 1) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(lo, hi)
        spin.setSingleStep(step)
        spin.setValue(value)
        return spin

    @staticmethod
    def _float_spin(value: float) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setDecimals(4)
        spin.setRange(0.0, 1000.0)
        spin.setSingleStep(0.001 if value < 0.01 else 0.1)
        spin.setValue(value)
        return spin

    @staticmethod
    def _pair(a: QWidget, b: QWidget) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(a)
        row.addWidget(b)
        return box

    @staticmethod
    def _labelled(text: str, inner: QHBoxLayout) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel(text))
        row.addLayout(inner, 1)
        return row

    def _browse_hdf5(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Training pairs", "", "HDF5 (*.h5 *.hdf5);;All files (*)")
        if path:
            self.hdf5_edit.setText(path)

    def _browse_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the model as", "", "napari-tomoml models (*.safetensors)")
        if path:
            self.save_edit.setText(path)

    # ------------------------------------------------------------------ parameters
    def source(self) -> dict[str, Any]:
        from ..errors import InputError

        if self.source_combo.currentText() == FROM_HDF5:
            path = self.hdf5_edit.text().strip()
            if not path:
                raise InputError("choose the HDF5 file with the training pairs")
            return {"hdf5": path}
        noisy, clean = self.noisy_combo.layer(), self.clean_combo.layer()
        if noisy is None or clean is None:
            raise InputError("choose a noisy and a clean layer")
        if noisy.name == clean.name:  # plugin widgets see proxies: compare names, not identity
            raise InputError("the noisy and the clean layer are the same layer")
        return {"noisy": noisy.data, "clean": clean.data, "val_fraction": self.val_fraction.value(),
                "names": (noisy.name, clean.name)}

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "depth": int(self.depth_combo.currentText()),
            "steps": int(self.steps_spin.value()),
            "batch": int(self.batch_spin.value()),
            "crop": int(self.crop_spin.value()),
            "val_every": int(self.val_every_spin.value()),
            "device": self.device_combo.currentText(),
            "losses": {"lambda_mse": self.lambda_mse.value(), "lambda_adv": self.lambda_adv.value(),
                       "lambda_vgg": self.lambda_vgg.value()},
        }
        if self.vgg_edit.text().strip():
            opts["vgg"] = self.vgg_edit.text().strip()
        return opts

    # ------------------------------------------------------------------ action
    def train(self):
        from napari.utils.notifications import show_error

        from ..errors import TomomlError

        if self.runner.running:
            return None
        try:
            source = self.source()
        except TomomlError as exc:
            show_error(f"napari-tomoml: {exc}")
            return None
        source.pop("names", None)
        self._stop.clear()
        self.plot.clear()
        self.status_label.setText("")
        self.train_button.setEnabled(False)
        return self.runner.run(
            train_and_save_steps,
            source,
            self.save_edit.text().strip(),
            self.options(),
            self._stop,
            on_progress=self._on_progress,
            on_result=self._on_saved,
            on_cancel=self._stop.set,
            on_finish=lambda _s: self.train_button.setEnabled(True),
            description="training TomoGAN",
        )

    def _on_progress(self, p: Progress) -> None:
        data = p.data or {}
        step = data.get("step")
        if step is None:
            return
        losses = data.get("losses") or {}
        loss = losses.get("generator", losses.get("mse"))
        if loss is not None:
            self.plot.add("train", step, loss)
        text = f"step {step}/{p.total}"
        if loss is not None:
            text += f" · loss {loss:.3g}"
        validation = data.get("validation")
        if validation:
            self.plot.add("val", step, validation.get("val_loss"))
            self._last_validation = validation
        last = getattr(self, "_last_validation", None)
        if last:
            text += f" · val PSNR {last.get('psnr', float('nan')):.2f} dB, SSIM {last.get('ssim', float('nan')):.3f}"
        self.status_label.setText(text)

    def _on_saved(self, result: tuple) -> None:
        from .denoise import remember_model

        path, best = result
        self.saved_path = Path(path)
        remember_model(path)  # offered in the Denoise widget's model list from now on
        psnr = best.get("psnr")
        extra = f" (best validation PSNR {psnr:.2f} dB)" if psnr is not None else ""
        self.status_label.setText(f"saved {path}{extra}; it is now in the Denoise widget's model list.")
