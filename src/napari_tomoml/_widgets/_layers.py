"""Small helpers the widgets share: a combo box of image layers kept in sync with the viewer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QComboBox, QWidget


class LayerCombo(QComboBox):
    """A combo box listing the viewer's image layers (optionally filtered), kept up to date."""

    def __init__(
        self,
        viewer: Any,
        *,
        ndim: int | None = 3,
        accept: Callable[[Any], bool] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._ndim = ndim
        self._accept = accept
        events = viewer.layers.events
        events.inserted.connect(self.refresh)
        events.removed.connect(self.refresh)
        events.moved.connect(self.refresh)
        events.changed.connect(self.refresh)
        self.destroyed.connect(self._disconnect)
        self.refresh()

    def _disconnect(self, *_: Any) -> None:  # pragma: no cover - Qt teardown
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.moved, events.changed):
            try:
                ev.disconnect(self.refresh)
            except (TypeError, RuntimeError, ValueError):
                pass

    def _ok(self, layer: Any) -> bool:
        from napari.layers import Image

        if not isinstance(layer, Image) or layer.rgb:
            return False
        if self._ndim is not None and layer.ndim != self._ndim:
            return False
        return self._accept is None or bool(self._accept(layer))

    def refresh(self, *_: Any) -> None:
        try:
            current = self.currentText()
        except RuntimeError:  # the combo was deleted (its dock closed): stop listening
            self._disconnect()
            return
        names = [layer.name for layer in self.viewer.layers if self._ok(layer)]
        if names == [self.itemText(i) for i in range(self.count())]:
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentIndex(names.index(current))
        self.blockSignals(False)
        if current not in names:
            self.currentIndexChanged.emit(self.currentIndex())

    def showPopup(self) -> None:  # noqa: N802 - Qt override; catches renamed layers
        self.refresh()
        super().showPopup()

    def layer(self) -> Any | None:
        """The chosen layer, or None."""
        name = self.currentText()
        if name and name in self.viewer.layers:
            return self.viewer.layers[name]
        return None

    def set_layer(self, layer_or_name: Any) -> None:
        name = getattr(layer_or_name, "name", layer_or_name)
        self.refresh()
        index = self.findText(str(name))
        if index >= 0:
            self.setCurrentIndex(index)


def is_projections(layer: Any) -> bool:
    """A layer the Reconstruct widget can use: not sinograms, not a volume or a centre check."""
    meta = layer.metadata
    return meta.get("kind") not in ("sinograms", "volume") and meta.get("task") not in (
        "reconstruct",
        "denoise",
        "centre check",
    )


def is_volume(layer: Any) -> bool:
    """A layer the Denoise/Train widgets can use: a 2-D or 3-D image that is not projections/sinograms."""
    meta = layer.metadata
    return (
        layer.ndim in (2, 3)
        and meta.get("kind") not in ("projections", "sinograms")
        and meta.get("task") != "centre check"
    )


def unique_name(viewer: Any, name: str) -> str:
    """``name``, or ``name [2]``, ``name [3]``… if a layer already has it."""
    if name not in viewer.layers:
        return name
    i = 2
    while f"{name} [{i}]" in viewer.layers:
        i += 1
    return f"{name} [{i}]"


def add_or_update_image(viewer: Any, name: str, data: Any, **kwargs: Any) -> Any:
    """Replace the data of the image layer called ``name`` or add it (for live previews)."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.ndim == getattr(data, "ndim", None):
            layer.data = data
            for key, value in kwargs.items():
                if key in ("contrast_limits", "metadata", "scale", "translate"):
                    setattr(layer, key, value)
            return layer
        viewer.layers.remove(layer)
    return viewer.add_image(data, name=name, **kwargs)
