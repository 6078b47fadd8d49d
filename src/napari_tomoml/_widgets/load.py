"""Load widget: pick a scan file or folder, see what is in it, add it to the viewer.

Thin: :func:`napari_tomoml.load_scan` reads, :func:`napari_tomoml.normalize` normalises; both
run in a worker thread through :class:`~._worker.TaskRunner`. The projections layer (and a
sinogram view of the same data) carry the scan's facts in ``layer.metadata``: ``theta``
(radians), ``flats``/``darks`` and their counts, ``source``, ``summary``, ``normalized``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..progress import Progress
from ._layers import show_result
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

SCAN_FILTER = "Scans (*.h5 *.hdf5 *.nxs *.npy *.tif *.tiff);;All files (*)"


def inspect_steps(path: str):
    """Open the scan lazily (a quick look at what the file holds) and return it."""
    from .. import load_scan

    yield Progress(0, 1, f"opening {Path(path).name}")
    scan = load_scan(Path(path), lazy=True)
    yield Progress(1, 1, "opened")
    return scan


def load_steps(path: str, *, normalise: bool, zinger: float | None, lazy: bool | None = None):
    """Read (and optionally normalise) a scan; returns ``(scan, data, contrast_limits)``."""
    from .. import load_scan
    from .._reader import contrast_limits
    from ..prep import normalize_steps

    yield Progress(0, 1, f"reading {Path(path).name}")
    scan = load_scan(Path(path), lazy=lazy)
    data = scan.projections
    if normalise:  # flats, darks, −log; progress per block of frames
        data = yield from normalize_steps(scan, zinger_threshold=zinger)
    yield Progress(0, 1, "contrast limits")
    clim = contrast_limits(data)
    yield Progress(1, 1, "loaded")
    return scan, data, clim


class LoadWidget(QWidget):
    """Choose a scan, inspect it, and add its projections (and sinograms) as image layers."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_layers: list[Any] = []

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("scan file or folder (.h5, .nxs, .npy, .zarr, .tif, TIFF folder)")
        self.path_edit.editingFinished.connect(self.inspect)
        browse_file = QPushButton("File…")
        browse_file.clicked.connect(self._browse_file)
        browse_dir = QPushButton("Folder…")
        browse_dir.clicked.connect(self._browse_folder)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse_file)
        path_row.addWidget(browse_dir)

        self.summary_label = QLabel("No scan chosen.")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(self.summary_label.textInteractionFlags())
        summary_box = QGroupBox("Scan")
        QVBoxLayout(summary_box).addWidget(self.summary_label)

        self.normalise_check = QCheckBox("Normalise (flats, darks, −log)")
        self.normalise_check.setChecked(True)
        self.normalise_check.setToolTip(
            "Divide by the flat fields after subtracting the darks and take −log, giving line "
            "integrals ready to reconstruct. Off: add the raw counts."
        )
        self.zinger_check = QCheckBox("Remove zingers above")
        self.zinger_spin = QDoubleSpinBox()
        self.zinger_spin.setRange(0.01, 1e6)
        self.zinger_spin.setDecimals(2)
        self.zinger_spin.setValue(0.1)
        self.zinger_spin.setToolTip("Threshold for the zinger (bright outlier) filter, in normalised units")
        self.zinger_spin.setEnabled(False)
        self.zinger_check.toggled.connect(self.zinger_spin.setEnabled)
        self.normalise_check.toggled.connect(self._sync_zinger)
        zinger_row = QHBoxLayout()
        zinger_row.addWidget(self.zinger_check)
        zinger_row.addWidget(self.zinger_spin)
        self.sinogram_check = QCheckBox("Also add a sinogram view (rows × angles × cols)")
        self.sinogram_check.setChecked(True)

        options = QFormLayout()
        options.addRow(self.normalise_check)
        options.addRow(zinger_row)
        options.addRow(self.sinogram_check)

        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load)
        self.view_button = QPushButton("Show sinograms")
        self.view_button.setToolTip("Switch the view between the projections and the sinograms of the last scan")
        self.view_button.setEnabled(False)
        self.view_button.clicked.connect(self.toggle_view)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button, 1)
        buttons.addWidget(self.view_button)
        self.runner = TaskRunner(self)

        layout = QVBoxLayout(self)
        layout.addLayout(path_row)
        layout.addWidget(summary_box)
        layout.addLayout(options)
        layout.addLayout(buttons)
        layout.addWidget(self.runner)
        layout.addStretch(1)

    # ------------------------------------------------------------------ UI helpers
    def _sync_zinger(self, on: bool) -> None:
        self.zinger_check.setEnabled(on)
        self.zinger_spin.setEnabled(on and self.zinger_check.isChecked())

    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scan", "", SCAN_FILTER)
        if path:
            self.set_path(path)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a projections folder or zarr")
        if path:
            self.set_path(path)

    def set_path(self, path: str | Path) -> None:
        """Set the scan path and inspect it (shows its summary)."""
        self.path_edit.setText(str(path))
        self.inspect()

    @property
    def path(self) -> str:
        return self.path_edit.text().strip()

    # ------------------------------------------------------------------ actions
    def inspect(self) -> None:
        """Show the summary of the chosen scan (read lazily in a worker)."""
        if not self.path or self.runner.running:
            return
        self.summary_label.setText("reading…")
        self.runner.run(
            inspect_steps,
            self.path,
            on_result=self._show_summary,
            on_error=lambda exc: self.summary_label.setText(f"Cannot read this scan:\n{exc}"),
            description="inspecting",
        )

    def _show_summary(self, scan: Any) -> None:
        self.summary_label.setText(scan.summary())
        has_refs = scan.flats is not None or scan.darks is not None
        if not has_refs and self.normalise_check.isChecked():
            self.summary_label.setText(
                scan.summary() + "\n(no flats/darks: normalising only takes −log if values look like transmission)"
            )

    def load(self):
        """Read the scan in a worker and add its layers; returns the worker (or None)."""
        if not self.path:
            from napari.utils.notifications import show_error

            show_error("napari-tomoml: choose a scan file or folder first")
            return None
        if self.runner.running:
            return None
        zinger = (
            self.zinger_spin.value()
            if self.normalise_check.isChecked() and self.zinger_check.isChecked()
            else None
        )
        self.load_button.setEnabled(False)
        return self.runner.run(
            load_steps,
            self.path,
            normalise=self.normalise_check.isChecked(),
            zinger=zinger,
            on_result=self._add_layers,
            on_finish=lambda _status: self.load_button.setEnabled(True),
            description="loading",
        )

    def _add_layers(self, result: tuple) -> None:
        from .._reader import physical_scale, scan_metadata

        scan, data, clim = result
        src = Path(self.path)
        stem = src.stem if src.suffix else src.name
        meta = scan_metadata(scan, src)
        normalised = self.normalise_check.isChecked()
        meta["normalized"] = normalised
        if normalised:  # −log(I/I₀): no longer detector counts
            meta["units"] = "line integral (−log I/I₀)"
        # what the reader had to guess (angles, which frames are projections) is shown as a warning
        guessed = [n for n in meta.get("notes") or [] if "assumed" in n or "taken as" in n]
        if guessed:
            meta["warnings"] = guessed
        self._show_summary(scan)
        suffix = "line integrals" if normalised else "projections"
        scale = physical_scale(meta, "projections", 3).get("scale", (1.0, 1.0, 1.0))
        sinograms = None
        if self.sinogram_check.isChecked():  # added first (hidden), so the projections land on top
            sino_meta = dict(meta, kind="sinograms", axes="rows, angles, cols")
            sino_data = data.transpose(1, 0, 2)
            sinograms = self.viewer.add_image(
                sino_data,
                name=f"{stem} sinograms",
                metadata=sino_meta,
                colormap="gray",
                contrast_limits=self._sinogram_contrast(sino_data),
                scale=(scale[1], scale[0], scale[2]),
                axis_labels=("row", "angle", "col"),
                visible=False,
            )
        projections = show_result(
            self.viewer,
            data,
            name=f"{stem} {suffix}",
            metadata=meta,
            contrast_limits=clim,
            colormap="gray",
            scale=scale,
        )
        layers = [projections] if sinograms is None else [projections, sinograms]
        self.viewer.layers.selection.active = projections
        self.last_layers = layers
        self.view_button.setEnabled(len(layers) == 2)
        self.view_button.setText("Show sinograms")

    @staticmethod
    def _sinogram_contrast(data) -> tuple[float, float]:
        """Contrast from a few sinograms (rows), not from the projections' frames."""
        from ..io import estimate_contrast_limits

        return estimate_contrast_limits(data)

    def toggle_view(self) -> Any:
        """Show the sinograms of the last scan (hiding its projections), or back; returns the layer shown."""
        if len(self.last_layers) != 2 or any(la not in self.viewer.layers for la in self.last_layers):
            return None
        projections, sinograms = self.last_layers
        show, hide = (sinograms, projections) if not sinograms.visible else (projections, sinograms)
        layer = show_result(self.viewer, show, source=hide)
        self.view_button.setText("Show projections" if show is sinograms else "Show sinograms")
        return layer
