"""Denoise widget: a reconstructed volume layer → a denoised layer, with a TomoGAN model.

Thin: the model comes from :mod:`napari_tomoml.models.store` (a bundled name or a model file) or
is imported from the published Keras TomoGAN file by
:func:`napari_tomoml.import_tomogan_keras`; :func:`napari_tomoml.tasks.denoise.denoise_steps`
does the work in a worker thread, slice batch by slice batch, with progress and Cancel.
The model list holds the bundled models, the models imported into the model cache, and the
models trained in the Train widget (remembered in ``trained.json`` in the model cache).
"""

from __future__ import annotations

import json
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
from ..tasks.registry import default
from ._layers import LayerCombo, is_volume, show_result, unique_name, volume_score
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


TRAINED_LIST = "trained.json"


def remember_model(path: str | Path) -> None:
    """Add a trained model file to the list the Denoise widget offers (newest first)."""
    path = str(Path(path).resolve())
    listing = model_cache_dir() / TRAINED_LIST
    known = [p for p in _trained() if p != path]
    listing.parent.mkdir(parents=True, exist_ok=True)
    tmp = listing.with_name(listing.name + ".tmp")
    tmp.write_text(json.dumps([path, *known][:50], indent=1))
    tmp.replace(listing)


def _trained() -> list[str]:
    try:
        known = json.loads((model_cache_dir() / TRAINED_LIST).read_text())
    except (OSError, ValueError):
        return []
    return [str(p) for p in known if isinstance(p, str)]


DENOISERS = ("tomogan",)  # architectures that map a noisy volume to a clean one


def _is_denoiser(card_path: Path) -> bool:
    """Whether the model card describes a denoiser (other tasks keep their models in the same places)."""
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return False
    return card.get("architecture") in DENOISERS or card.get("task") == "denoise"


def known_models() -> dict[str, str]:
    """Model-list label → model spec: bundled, imported and trained denoisers."""
    from ..models.store import WEIGHTS_DIR

    out = {name: name for name in _bundled() if _is_denoiser(WEIGHTS_DIR / f"{name}.json")}
    cache = model_cache_dir()
    files = [str(p) for p in sorted(cache.glob("*.safetensors")) if p.with_suffix(".json").is_file()]
    for path in [*_trained(), *files]:
        p = Path(path)
        weights = p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")
        if weights.is_file() and _is_denoiser(weights.with_suffix(".json")):
            label = f"{weights.stem} ({'imported' if weights.parent == cache else 'trained'})"
            out.setdefault(label, str(weights))
    return out


class DenoiseWidget(QWidget):
    """Pick a volume layer and a model, denoise into a new layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result_layer = None

        self.layer_combo = LayerCombo(napari_viewer, ndim=None, accept=is_volume, prefer=volume_score)
        self.models: dict[str, str] = {}
        self.model_combo = QComboBox()
        self.refresh_models()
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
        self.device_combo.setCurrentText(default("denoise", "device"))
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
    def refresh_models(self) -> None:
        """Re-read the model list (bundled, imported, trained), keeping the current choice."""
        current = self.model_combo.currentText()
        self.models = known_models()
        items = [*self.models, MODEL_FILE, KERAS_FILE]
        if items == [self.model_combo.itemText(i) for i in range(self.model_combo.count())]:
            return
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems(items)
        choice = current if current in items else default("denoise", "model")
        if choice in items:
            self.model_combo.setCurrentText(choice)
        self.model_combo.blockSignals(False)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override: models trained meanwhile
        self.refresh_models()
        super().showEvent(event)

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

    def _describe(self, label: str) -> str:
        """What the model card says: its description and the data it was trained on."""
        try:
            from ..models.store import WEIGHTS_DIR, read_card

            spec = self.models.get(label, label)
            path = Path(spec) if spec.endswith(".safetensors") else WEIGHTS_DIR / f"{spec}.safetensors"
            card = read_card(path.with_suffix(".json"))
        except Exception:
            return ""
        text = str(card.get("description") or "")
        data = (card.get("training") or {}).get("data") or {}
        if data.get("input"):
            text += f"\nTrained on: {data['input']}"
            if data.get("phantom_family"):
                text += f" ({data['phantom_family']} phantoms"
                if data.get("i0_photons_per_pixel"):
                    text += f", {data['i0_photons_per_pixel']:g} photons/pixel"
                text += ")"
            text += ". Data far from this (other noise, contrast, sharp edges) may show halos."
        else:
            text += "\nIts card does not say what it was trained on: compare with the input (halos at edges)."
        return text.strip()

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
        self.refresh_models()
        if text in self.models:
            self.model_combo.setCurrentText(text)
            return
        for label, path in self.models.items():
            if path == text:
                self.model_combo.setCurrentText(label)
                return
        keras = Path(text).suffix.lower() in (".h5", ".hdf5")
        self.model_combo.setCurrentText(KERAS_FILE if keras else MODEL_FILE)
        self.path_edit.setText(text)

    def model_spec(self) -> str:
        """A bundled name or a model / Keras ``.h5`` path; raises ``InputError`` when a path is missing."""
        from ..errors import InputError

        choice = self.model_combo.currentText()
        if choice not in (MODEL_FILE, KERAS_FILE):
            return self.models.get(choice, choice)
        path = self.path_edit.text().strip()
        if not path:
            raise InputError("choose a model file first")
        return path

    def task_options(self) -> dict[str, Any]:
        """This widget's settings under the ``denoise`` task's option names (registry)."""
        choice = self.model_combo.currentText()
        return {"model": self.models.get(choice, choice), "device": self.device_combo.currentText()}

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
        label = self.model_combo.currentText()
        model_name = label if label not in (MODEL_FILE, KERAS_FILE) else Path(model).stem
        model_name = model_name.split(" (")[0]

        def add(result: Any) -> None:
            volume, meta = result if isinstance(result, tuple) else (result, {})
            metadata = {**dict(meta or {}), "source": source}
            metadata.setdefault("task", "denoise")
            metadata["kind"] = "volume"
            metadata.setdefault("model", model_name)
            self.result_layer = show_result(
                self.viewer,
                volume,
                name=unique_name(self.viewer, f"{source} {model_name}"),
                colormap="gray",
                translate=translate,
                scale=scale,
                source=source,
                metadata=metadata,
            )

        self.denoise_button.setEnabled(False)
        return self.runner.run(
            denoise_steps,
            layer.data,
            model,
            device=self.device_combo.currentText(),
            on_result=add,
            on_finish=lambda _s: self.denoise_button.setEnabled(True),
            description=f"denoising ({model_name})",
        )
