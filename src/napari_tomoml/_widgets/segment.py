"""Segmentation widgets: "Train segmenter" (Image + Labels layers -> a U-Net) and "Segment".

Thin: :func:`~napari_tomoml.tasks.segment.train_unet_steps` trains in a worker (live loss and
validation Dice in the plot; Stop ends training and keeps the best weights),
:func:`~napari_tomoml.tasks.segment.save_model` saves, and
:func:`~napari_tomoml.tasks.segment.segment_steps` predicts (-> a Labels layer, optionally a
probability Image layer). Models trained in this session are offered by name in Segment.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..device import available_devices
from ..models.store import LoadedModel, bundled_models
from ..progress import Progress
from ..tasks.registry import default
from ..tasks.segment import DEFAULT_STEPS, save_model, segment_steps, train_unet_steps
from . import _worker  # its show_error/show_info: one place for notifications (and for tests)
from ._layers import LayerCombo, show_result
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

# models trained in this session, by name, for the Segment widget
TRAINED: dict[str, LoadedModel] = {}
MODEL_FILE = "Model file…"
LOSSES = ["ce+dice", "ce", "dice", "wce", "bce"]


def _is_image(layer: Any) -> bool:
    return layer.ndim in (2, 3) and layer.metadata.get("kind") not in ("projections", "sinograms")


class LabelsCombo(LayerCombo):
    """A combo box of the viewer's Labels layers."""

    def _ok(self, layer: Any) -> bool:
        from napari.layers import Labels

        return isinstance(layer, Labels) and layer.ndim in (2, 3)


class LivePlot(QWidget):
    """Training loss and validation Dice against the step (pyqtgraph)."""

    def __init__(self) -> None:
        super().__init__()
        import pyqtgraph as pg

        self.view = pg.PlotWidget()
        self.view.setMinimumHeight(140)
        self.view.setLabel("bottom", "step")
        self.view.setLabel("left", "loss (blue) / validation Dice (orange)")
        self.view.setYRange(0, 1.5)
        self.loss = self.view.plot(pen=pg.mkPen((90, 160, 255), width=1.5))
        self.dice = self.view.plot(pen=pg.mkPen((255, 170, 60), width=2), symbol="o", symbolSize=4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.clear()

    def clear(self) -> None:
        self.points: dict[str, tuple[list[float], list[float]]] = {"loss": ([], []), "dice": ([], [])}
        self.loss.setData([], [])
        self.dice.setData([], [])

    def add(self, name: str, step: float, value: float) -> None:
        xs, ys = self.points[name]
        xs.append(float(step))
        ys.append(float(value))
        getattr(self, name).setData(xs, ys)


def _int_spin(lo: int, hi: int, value: int, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setValue(value)
    return spin


class TrainSegmenterWidget(QWidget):
    """Train a U-Net from an Image layer and a Labels layer (as painted: sparse by default)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.model: LoadedModel | None = None
        self.saved_path: Path | None = None
        self._stop = threading.Event()

        self.image_combo = LayerCombo(napari_viewer, ndim=None, accept=_is_image)
        self.labels_combo = LabelsCombo(napari_viewer, ndim=None)
        self.sparse_check = QCheckBox("0 = not annotated (painted strokes)")
        self.sparse_check.setChecked(True)
        self.sparse_check.setToolTip("Unchecked: the labels are a complete mask, every value a class (0 = background)")
        self.patch_spin = _int_spin(16, 1024, 128, step=16)
        self.steps_spin = _int_spin(1, 100_000, DEFAULT_STEPS, step=50)
        self.loss_combo = QComboBox()
        self.loss_combo.addItems(LOSSES)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.runner = TaskRunner(self, cancel_text="Stop")
        self.plot = LivePlot()
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.save_edit = QLineEdit()
        self.save_edit.setPlaceholderText("where to save the model (e.g. models/my-segmenter)")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.save_button = QPushButton("Save model")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self.save)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", self.labels_combo)
        form.addRow("", self.sparse_check)
        form.addRow("Patch (px)", self.patch_spin)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Loss", self.loss_combo)
        form.addRow("Device", self.device_combo)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_edit, 1)
        save_row.addWidget(browse)
        save_row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.train_button)
        layout.addWidget(self.runner)
        layout.addWidget(self.plot)
        layout.addWidget(self.status_label)
        layout.addLayout(save_row)
        layout.addStretch(1)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the model as", "", "napari-tomoml models (*.safetensors)")
        if path:
            self.save_edit.setText(path)

    def train(self):
        if self.runner.running:
            return None
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None or labels is None:
            _worker.show_error("napari-tomoml: choose an Image layer and a Labels layer (paint a few strokes of each class)")
            return None
        self._stop.clear()
        self.plot.clear()
        self.status_label.setText("")
        self.train_button.setEnabled(False)
        self._source = image.name
        return self.runner.run(
            train_unet_steps,
            image.data,
            labels.data,
            sparse=self.sparse_check.isChecked(),
            patch=self.patch_spin.value(),
            steps=self.steps_spin.value(),
            loss=self.loss_combo.currentText(),
            device=self.device_combo.currentText(),
            stop=self._stop,
            on_progress=self._on_progress,
            on_result=self._on_trained,
            on_cancel=self._stop.set,
            on_finish=lambda _s: self.train_button.setEnabled(True),
            description="training U-Net",
        )

    def _on_progress(self, p: Progress) -> None:
        data = p.data or {}
        if "step" not in data:
            return
        loss = (data.get("losses") or {}).get("loss")
        if loss is not None:
            self.plot.add("loss", data["step"], loss)
        validation = data.get("validation")
        if validation:
            self.plot.add("dice", data["step"], validation["dice"])
            self._last_dice = validation["dice"]
        text = f"step {data['step']}/{p.total}" + (f" · loss {loss:.3g}" if loss is not None else "")
        if getattr(self, "_last_dice", None) is not None:
            text += f" · validation Dice {self._last_dice:.3f}"
        self.status_label.setText(text)

    def _on_trained(self, model: LoadedModel) -> None:
        self.model = model
        name = f"trained: {self._source}"
        i = 2
        while name in TRAINED:
            name, i = f"trained: {self._source} [{i}]", i + 1
        TRAINED[name] = model
        model.source = name
        self.save_button.setEnabled(True)
        dice = model.card["metrics"].get("validation", {}).get("dice")
        best = f"best validation Dice {dice:.3f}" if dice is not None else "no validation"
        self.status_label.setText(f"{best}. Segment widget: model '{name}'. Save it to keep it.")

    def save(self) -> Path | None:
        from ..errors import TomomlError

        path = self.save_edit.text().strip()
        if self.model is None or not path:
            _worker.show_error("napari-tomoml: train a model and choose where to save it first")
            return None
        try:
            self.saved_path = save_model(self.model, path)
        except TomomlError as exc:
            _worker.show_error(f"napari-tomoml: {exc}")
            return None
        _worker.show_info(f"napari-tomoml: saved {self.saved_path}")
        self.status_label.setText(f"saved {self.saved_path}")
        return self.saved_path


class SegmentWidget(QWidget):
    """Segment an image or volume layer with a U-Net -> a Labels layer (+ probabilities)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.image_combo = LayerCombo(napari_viewer, ndim=None, accept=_is_image)
        self.model_combo = QComboBox()
        self.model_combo.currentTextChanged.connect(lambda t: self.file_edit.setVisible(t == MODEL_FILE))
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText("path/to/model.safetensors")
        self.tile_spin = _int_spin(0, 8192, default("segment", "tile") or 0, step=64)  # 0: auto
        self.tile_spin.setSpecialValueText("auto (free memory)")
        self.tile_spin.setToolTip("Largest tile side: smaller tiles use less memory; the result is the same")
        self.prob_check = QCheckBox("also add class probabilities")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_combo.setCurrentText(default("segment", "device"))
        self.segment_button = QPushButton("Segment")
        self.segment_button.clicked.connect(self.segment)
        self.runner = TaskRunner(self)
        self.refresh_models()
        self.file_edit.setVisible(self.model_combo.currentText() == MODEL_FILE)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.file_edit)
        form.addRow("Tile (px)", self.tile_spin)
        form.addRow("", self.prob_check)
        form.addRow("Device", self.device_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.segment_button)
        layout.addWidget(self.runner)
        layout.addStretch(1)

    def refresh_models(self) -> None:
        current = self.model_combo.currentText()
        names = [*reversed(TRAINED), *[m for m in bundled_models() if m.startswith("unet")], MODEL_FILE]
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems(names)
        fallback = names[0] if TRAINED else default("segment", "model")
        self.model_combo.setCurrentText(current if current in names else fallback)
        self.model_combo.blockSignals(False)

    def set_model(self, model: Any) -> None:
        """Choose a model: a name in the list, or a file path."""
        self.refresh_models()
        if str(model) in [self.model_combo.itemText(i) for i in range(self.model_combo.count())]:
            self.model_combo.setCurrentText(str(model))
        else:
            self.model_combo.setCurrentText(MODEL_FILE)
            self.file_edit.setText(str(model))

    def _model(self) -> Any:
        choice = self.model_combo.currentText()
        if choice == MODEL_FILE:
            return self.file_edit.text().strip()
        return TRAINED.get(choice, choice)

    def task_options(self) -> dict[str, Any]:
        """This widget's settings under the ``segment`` task's option names (registry)."""
        return {"model": self._model(), "tile": self.tile_spin.value() or None, "device": self.device_combo.currentText()}

    def segment(self):
        if self.runner.running:
            return None
        layer = self.image_combo.layer()
        if layer is None:
            _worker.show_error("napari-tomoml: choose an image layer to segment")
            return None
        self.segment_button.setEnabled(False)
        return self.runner.run(
            segment_steps,
            layer.data,
            self._model(),
            device=self.device_combo.currentText(),
            tile=self.tile_spin.value() or None,
            probabilities=self.prob_check.isChecked(),
            on_result=lambda result: self._show(layer, result),
            on_finish=lambda _s: self.segment_button.setEnabled(True),
            description=f"segmenting {layer.name}",
        )

    def _show(self, source: Any, result: tuple) -> None:
        import numpy as np

        out, meta = result
        meta = {**meta, "source": source.name, "kind": "labels"}
        place = {"scale": source.scale, "translate": source.translate}
        probabilities = out if meta["parameters"]["probabilities"] else None
        if probabilities is not None:
            out = np.asarray(meta["classes"]["values"], np.uint8)[probabilities.argmax(0)]
        show_result(self.viewer, out, layer_type="labels", name=f"{source.name} segmented", metadata=meta, **place)
        if probabilities is not None:
            # added last and without framing: the class axis must not take the labels out of view
            layer = show_result(self.viewer, probabilities, name=f"{source.name} probabilities",
                                metadata={**meta, "kind": "probabilities"}, axis_labels=("class", *("zyx"[-source.ndim:])),
                                scale=(1, *source.scale), translate=(0, *source.translate), frame=False, select=False)
            layer.visible = False  # an opaque image above the labels would hide them; one click shows it
