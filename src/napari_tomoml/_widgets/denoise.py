"""Denoise widget: a reconstructed volume layer → a denoised layer, with a TomoGAN model.

Thin: the model comes from :mod:`napari_tomoml.models.store` (a bundled name or a model file) or
is imported from the published Keras TomoGAN file by
:func:`napari_tomoml.import_tomogan_keras`; :func:`napari_tomoml.tasks.denoise.denoise_steps`
does the work in a worker thread, slice batch by slice batch, with progress and Cancel.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..device import available_devices
from ..models.store import model_cache_dir
from ..tasks.denoise import denoise_steps
from ._layers import LayerCombo, is_volume, unique_name
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

MODEL_FILE = "Model file (.safetensors)…"
KERAS_FILE = "Published Keras TomoGAN (.h5)…"


def _bundled() -> list[str]:
    try:
        from ..models.store import bundled_models

        return bundled_models()
    except Exception:  # pragma: no cover - a broken install must not break the widget
        return []


class DenoiseWidget(QWidget):
    """Pick a volume layer and a model, denoise into a new layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result_layer = None

        self.layer_combo = LayerCombo(napari_viewer, ndim=None, accept=is_volume)
        self.model_combo = QComboBox()
        self.model_combo.addItems([*_bundled(), MODEL_FILE, KERAS_FILE])
        self.model_combo.currentTextChanged.connect(self._model_changed)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("model file")
        self.browse_button = QPushButton("…")
        self.browse_button.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        self.path_box = QWidget()
        self.path_box.setLayout(path_row)
        path_row.setContentsMargins(0, 0, 0, 0)
        self.card_label = QLabel("")
        self.card_label.setWordWrap(True)

        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.denoise_button = QPushButton("Denoise")
        self.denoise_button.clicked.connect(self.denoise)
        self.runner = TaskRunner(self)

        form = QFormLayout()
        form.addRow("Volume", self.layer_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.path_box)
        form.addRow("Device", self.device_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.card_label)
        layout.addWidget(self.denoise_button)
        layout.addWidget(self.runner)
        layout.addStretch(1)
        self._model_changed(self.model_combo.currentText())

    # ------------------------------------------------------------------ model choice
    def _model_changed(self, text: str) -> None:
        is_file = text in (MODEL_FILE, KERAS_FILE)
        self.path_box.setVisible(is_file)
        self.path_edit.setPlaceholderText("TomoGAN.h5 (Keras)" if text == KERAS_FILE else "model .safetensors")
        if is_file:
            self.card_label.setText(
                "The published generator is imported once into "
                f"{model_cache_dir()} and reused." if text == KERAS_FILE else ""
            )
        else:
            self.card_label.setText(self._describe(text))

    def _describe(self, name: str) -> str:
        try:
            from ..models.store import WEIGHTS_DIR, read_card

            card = read_card(WEIGHTS_DIR / f"{name}.json")
        except Exception:
            return ""
        return str(card.get("description") or "")

    def _browse(self) -> None:
        if self.model_combo.currentText() == KERAS_FILE:
            flt = "Keras HDF5 (*.h5 *.hdf5);;All files (*)"
        else:
            flt = "napari-tomoml models (*.safetensors);;All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", "", flt)
        if path:
            self.path_edit.setText(path)

    def set_model(self, spec: str | Path) -> None:
        """Choose a bundled model by name, a model file, or a Keras ``.h5`` file."""
        text = str(spec)
        if text in [self.model_combo.itemText(i) for i in range(self.model_combo.count())]:
            self.model_combo.setCurrentText(text)
            return
        keras = Path(text).suffix.lower() in (".h5", ".hdf5")
        self.model_combo.setCurrentText(KERAS_FILE if keras else MODEL_FILE)
        self.path_edit.setText(text)

    def model_spec(self) -> str:
        """A bundled name or a model / Keras ``.h5`` path; raises ``InputError`` when a path is missing."""
        from ..errors import InputError

        choice = self.model_combo.currentText()
        if choice not in (MODEL_FILE, KERAS_FILE):
            return choice
        path = self.path_edit.text().strip()
        if not path:
            raise InputError("choose a model file first")
        return path

    # ------------------------------------------------------------------ action
    def denoise(self):
        from napari.utils.notifications import show_error

        from ..errors import TomomlError

        layer = self.layer_combo.layer()
        if layer is None:
            show_error("napari-tomoml: choose a volume layer to denoise")
            return None
        if self.runner.running:
            return None
        try:
            model = self.model_spec()
        except TomomlError as exc:
            show_error(f"napari-tomoml: {exc}")
            return None
        source = layer.name
        translate, scale = tuple(layer.translate), tuple(layer.scale)
        clim = tuple(layer.contrast_limits)

        def add(result: Any) -> None:
            volume, meta = result if isinstance(result, tuple) else (result, {})
            metadata = {**dict(meta or {}), "source": source}
            metadata.setdefault("task", "denoise")
            metadata["kind"] = "volume"
            self.result_layer = self.viewer.add_image(
                volume,
                name=unique_name(self.viewer, f"{source} denoised"),
                colormap="gray",
                contrast_limits=clim,
                translate=translate,
                scale=scale,
                metadata=metadata,
            )
            self.viewer.layers.selection.active = self.result_layer

        self.denoise_button.setEnabled(False)
        return self.runner.run(
            denoise_steps,
            layer.data,
            model,
            device=self.device_combo.currentText(),
            on_result=add,
            on_finish=lambda _s: self.denoise_button.setEnabled(True),
            description="denoising",
        )
