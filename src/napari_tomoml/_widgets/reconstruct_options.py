"""The Reconstruct widget's beamline options: solver constraints and pre-processing, one box.

Thin: it collects values; :func:`napari_tomoml.tasks.reconstruct.prepare_steps` (phase retrieval,
rings, 360° stitch, padding) and :func:`~napari_tomoml.tasks.reconstruct.reconstruct_steps`
(TV weight, non-negativity, support, output size) do the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

# Paganin defaults: a typical micro-CT set-up (not a guess about the scan: the box starts off)
PHASE_DEFAULTS = {"pixel_size_um": 1.0, "distance_mm": 50.0, "energy_kev": 20.0, "delta_beta": 100.0}


def _spin(lo: float, hi: float, value: float, decimals: int, suffix: str = "", step: float | None = None):
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(decimals)
    spin.setValue(value)
    if suffix:
        spin.setSuffix(suffix)
    if step:
        spin.setSingleStep(step)
    return spin


class BeamlineOptions(QWidget):
    """Solver constraints (TV weight, non-negativity, support, output size) and pre-processing
    (Paganin phase retrieval, ring removal, 360° stitch, padding)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # solver
        self.tv_spin = _spin(0.0, 10.0, 0.01, 5, step=0.001)
        self.tv_spin.setToolTip("Total-variation weight of the tv solver (larger: smoother)")
        self.nonneg_check = QCheckBox("Non-negative")
        self.nonneg_check.setChecked(True)
        self.nonneg_check.setToolTip("Attenuation cannot be negative (sirt, tv)")
        self.support_check = QCheckBox("Support: inside the circle")
        self.support_check.setToolTip("tv: force zero outside the reconstruction circle")
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 16384)
        self.size_spin.setSpecialValueText("detector width")
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Output slice size; smaller is a region of interest centred on the axis")
        solver_row = QHBoxLayout()
        solver_row.setContentsMargins(0, 0, 0, 0)
        solver_row.addWidget(self.nonneg_check)
        solver_row.addWidget(self.support_check)

        # pre-processing
        self.rings_check = QCheckBox("Remove rings (stripe filter)")
        self.stitch_check = QCheckBox("360° scan, off-centre axis: stitch to 180°")
        self.pad_spin = QSpinBox()
        self.pad_spin.setRange(0, 4096)
        self.pad_spin.setSuffix(" px")
        self.pad_spin.setToolTip("Edge-pad each side of the detector (local/ROI scans: fewer cupping artefacts)")

        self.phase_box = QGroupBox("Paganin phase retrieval")
        self.phase_box.setCheckable(True)
        self.phase_box.setChecked(False)
        self.pixel_spin = _spin(0.001, 1000.0, PHASE_DEFAULTS["pixel_size_um"], 3, " µm")
        self.distance_spin = _spin(0.001, 100000.0, PHASE_DEFAULTS["distance_mm"], 1, " mm")
        self.energy_spin = _spin(0.1, 1000.0, PHASE_DEFAULTS["energy_kev"], 2, " keV")
        self.delta_beta_spin = _spin(0.001, 1e6, PHASE_DEFAULTS["delta_beta"], 1)
        phase_form = QFormLayout(self.phase_box)
        phase_form.addRow("Pixel size", self.pixel_spin)
        phase_form.addRow("Distance", self.distance_spin)
        phase_form.addRow("Energy", self.energy_spin)
        phase_form.addRow("δ/β", self.delta_beta_spin)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("TV weight", self.tv_spin)
        form.addRow("", self._wrap(solver_row))
        form.addRow("Output size", self.size_spin)
        form.addRow("Padding", self.pad_spin)
        form.addRow(self.rings_check)
        form.addRow(self.stitch_check)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.phase_box)
        self.algorithm_changed("fbp")

    @staticmethod
    def _wrap(inner: QHBoxLayout) -> QWidget:
        box = QWidget()
        box.setLayout(inner)
        return box

    def algorithm_changed(self, algorithm: str) -> None:
        self.tv_spin.setEnabled(algorithm == "tv")
        self.nonneg_check.setEnabled(algorithm in ("sirt", "tv"))
        self.support_check.setEnabled(algorithm == "tv")

    def layer_changed(self, metadata: dict[str, Any], theta: np.ndarray) -> str | None:
        """Follow a new layer: its pixel size; a full turn of angles suggests a 360° stitch.

        Returns a note when a setting was guessed from the data (for a warning), else None.
        """
        size = metadata.get("pixel_size_um")
        if isinstance(size, (int, float)) and size > 0:
            self.pixel_spin.setValue(float(size))
        span = float(np.ptp(theta)) if len(theta) > 1 else 0.0
        full_turn = len(theta) > 1 and span + span / (len(theta) - 1) >= 2 * np.pi - 1e-3
        self.stitch_check.setChecked(False)
        if full_turn:
            return (
                f"the angles cover {np.degrees(span):.0f}°: a 360° scan; tick '360° … stitch' if the "
                "axis is off-centre"
            )
        return None

    def prepare(self) -> dict[str, Any]:
        """Keyword arguments of ``prepare_steps`` (empty: nothing to do)."""
        out: dict[str, Any] = {}
        if self.phase_box.isChecked():
            out["phase"] = {
                "pixel_size_um": self.pixel_spin.value(),
                "distance_mm": self.distance_spin.value(),
                "energy_kev": self.energy_spin.value(),
                "delta_beta": self.delta_beta_spin.value(),
            }
        if self.rings_check.isChecked():
            out["rings"] = True
        if self.stitch_check.isChecked():
            out["stitch_360"] = True
        if self.pad_spin.value():
            out["pad"] = int(self.pad_spin.value())
        return out

    def solver(self, algorithm: str, n_det: int) -> dict[str, Any]:
        """Keyword arguments for ``reconstruct_steps``: tv, nonneg, support, n."""
        out: dict[str, Any] = {}
        size = int(self.size_spin.value()) or None
        if size is not None:
            out["n"] = size
        if algorithm == "tv":
            out["tv"] = float(self.tv_spin.value())
            if self.support_check.isChecked():
                n = size or n_det
                yy, xx = np.mgrid[:n, :n] + 0.5 - n / 2
                out["support"] = (np.hypot(yy, xx) <= n / 2).astype(np.float32)
        if algorithm in ("sirt", "tv"):
            out["nonneg"] = self.nonneg_check.isChecked()
        return out
