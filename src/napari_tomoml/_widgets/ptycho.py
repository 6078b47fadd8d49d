"""PtychoNN live widget: frames from a source → phase stitched into a layer that grows as the scan runs.

Thin: :class:`~napari_tomoml.ptycho.live.LiveEngine` does the work in a worker thread
(:func:`~napari_tomoml.ptycho.live.live_steps` through the shared TaskRunner); each Progress it
yields carries the stitched phase and the counters, which this widget shows. Stop closes the
generator, which stops the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
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
from ._layers import add_or_update_image
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

SIMULATED = "Simulated detector"
FOLDER = "Folder being written"
PVA = "pvAccess channel (EPICS)"
LAYER = "ptycho phase (live)"


def _demo_scan(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A simulated scan of a random etched object for the demo source, frames of ``size``²."""
    from ..ptycho import sim

    obj = sim.random_object((4 * size, 4 * size), seed=0)
    probe = sim.focused_probe(size, aperture=0.2 * 32 / size, defocus=0.5, photons=1e6)
    pos = sim.spiral_scan(obj.shape, size, sim.probe_diameter(probe), overlap=0.6)
    return sim.simulate(obj, probe, pos, photons=1e6), pos


def make_source(kind: str, location: str, *, rate: float, model_size: int = 64) -> Any:
    """The frame source the widget's choices describe (Qt-free logic, kept here because only the widget uses it).

    Simulated: ``location`` is a folder written by ``tomoml ptycho simulate`` (diffraction.npz +
    positions.npy), or empty for a built-in demo scan.
    """
    from ..errors import InputError
    from ..ptycho.live import FolderSource, PvaSource, SimulatedDetector

    if kind == SIMULATED:
        if location:
            from ..ptycho.io import load_dataset

            folder = Path(location)
            ds = load_dataset(folder / "diffraction.npz")
            pos_file = folder / "positions.npy"
            if not pos_file.is_file():
                raise InputError(f"{folder} has no positions.npy (write one with 'tomoml ptycho simulate')")
            patterns, positions = ds.patterns, np.load(pos_file, allow_pickle=False)
        else:
            patterns, positions = _demo_scan(model_size)
        return SimulatedDetector(patterns, positions, rate=rate or None)
    if not location:
        raise InputError("give a folder to watch" if kind == FOLDER else "give a pvAccess channel name")
    return FolderSource(location) if kind == FOLDER else PvaSource(location)


class PtychoLiveWidget(QWidget):
    """Choose a model and a frame source; Start streams phase into a growing layer with live counters."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.layer = None
        self.counters: dict[str, float] = {}

        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("PtychoNN model (.safetensors or .onnx)")
        self.model_edit.setText("ptychonn-sim")  # the bundled model: the built-in demo scan has its geometry
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        model_row = QHBoxLayout()
        model_row.setContentsMargins(0, 0, 0, 0)
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(browse)
        self.source_combo = QComboBox()
        self.source_combo.addItems([SIMULATED, FOLDER, PVA])
        self.source_combo.currentTextChanged.connect(self._source_changed)
        self.location_edit = QLineEdit()
        self.rate_spin = QDoubleSpinBox()
        self.rate_spin.setRange(0, 100_000)
        self.rate_spin.setValue(500)
        self.rate_spin.setSuffix(" frames/s")
        self.rate_spin.setSpecialValueText("as fast as possible")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 4096)
        self.batch_spin.setValue(64)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.counter_label = QLabel("")
        self.counter_label.setWordWrap(True)
        self.runner = TaskRunner(self, cancel_text="Stop")

        form = QFormLayout()
        form.addRow("Model", model_row)
        form.addRow("Source", self.source_combo)
        form.addRow("", self.location_edit)
        form.addRow("Detector rate", self.rate_spin)
        form.addRow("Batch", self.batch_spin)
        form.addRow("Device", self.device_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.start_button)
        layout.addWidget(self.counter_label)
        layout.addWidget(self.runner)
        layout.addStretch(1)
        self._source_changed(self.source_combo.currentText())

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "PtychoNN model", "", "Models (*.safetensors *.onnx);;All files (*)")
        if path:
            self.model_edit.setText(path)

    def _source_changed(self, kind: str) -> None:
        self.location_edit.setPlaceholderText({
            SIMULATED: "folder from 'tomoml ptycho simulate' (empty: built-in demo scan)",
            FOLDER: "folder receiving .npz frame files",
            PVA: "channel name, e.g. 13SIM1:Pva1:Image",
        }[kind])
        self.rate_spin.setEnabled(kind == SIMULATED)

    # ------------------------------------------------------------------ live updates (GUI thread)
    def _show(self, progress: Any) -> None:
        data = progress.data
        self.counters = dict(data.get("counters", {}))
        c = self.counters
        if c:
            self.counter_label.setText(
                f"received {c['received']} · inferred {c['inferred']} · buffered {c['buffered']} · "
                f"dropped {c['dropped']} · lost {c['lost']} · {c['rate']:.0f} frames/s"
                + (f" · model swaps {c['swaps']}" if c.get("swaps") else "")
            )
        phase = data.get("phase")
        if phase is not None and phase.size:
            scale = float(data.get("scale", 1.0))
            self.layer = add_or_update_image(
                self.viewer, LAYER, phase, colormap="gray", scale=(scale, scale),
                metadata={"task": "ptycho live", "kind": "phase", "source": self.source_combo.currentText()},
            )
            self.layer.refresh()

    def start(self):
        from napari.utils.notifications import show_error

        from ..errors import TomomlError
        from ..ptycho.live import live_steps
        from ..ptycho.nn import _resolve_model, model_size
        from ..device import resolve_device

        if self.runner.running:
            return None
        model = self.model_edit.text().strip()
        try:
            if not model:
                raise TomomlError("choose a PtychoNN model file first (train one with 'tomoml ptycho train')")
            loaded = _resolve_model(model, resolve_device(self.device_combo.currentText()))
            source = make_source(self.source_combo.currentText(), self.location_edit.text().strip(),
                                 rate=self.rate_spin.value(), model_size=model_size(loaded, 64))
        except TomomlError as exc:
            show_error(f"napari-tomoml: {exc}")
            return None

        def finished(result: Any) -> None:
            if result is not None:
                self.counters = dict(result.counters)
                c = self.counters
                self.counter_label.setText(
                    f"done: inferred {c['inferred']} of {c['received']} frames (dropped {c['dropped']}, lost "
                    f"{c['lost']}), sustained {c.get('sustained_rate', c['rate']):.0f} frames/s"
                )

        self.start_button.setEnabled(False)
        return self.runner.run(
            live_steps, source, loaded, batch=self.batch_spin.value(), device=self.device_combo.currentText(),
            update_every=0.2,
            on_progress=self._show, on_result=finished,
            on_finish=lambda _s: self.start_button.setEnabled(True),
            description="live phase retrieval",
        )
