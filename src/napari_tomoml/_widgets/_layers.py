"""Small helpers the widgets share: layer pickers kept in sync with the viewer, and `show_result`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
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


# Axis names per kind of layer; napari aligns layers by their trailing axes, so the labels (and
# the dims point) follow whichever result is in view.
AXIS_LABELS: dict[str, tuple[str, ...]] = {
    "projections": ("angle", "row", "col"),
    "sinograms": ("row", "angle", "col"),
    "volume": ("z", "y", "x"),
    "centre check": ("centre", "y", "x"),
    "image": ("y", "x"),
}


def axis_labels_for(ndim: int, metadata: dict[str, Any] | None) -> tuple[str, ...]:
    """Axis labels for a layer of ``ndim`` dimensions with this metadata (kind or task)."""
    meta = metadata or {}
    kind = meta.get("kind")
    if kind not in AXIS_LABELS:
        kind = "centre check" if meta.get("task") == "centre check" else ("volume" if ndim >= 3 else "image")
    labels = AXIS_LABELS[kind]
    if len(labels) > ndim:
        return labels[-ndim:]
    return tuple(f"axis {i}" for i in range(ndim - len(labels))) + labels


def _as_layers(viewer: Any, items: Any) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, (str,)) or not isinstance(items, (list, tuple, set)):
        items = [items]
    out = []
    for item in items:
        name = getattr(item, "name", item)
        if isinstance(name, str) and name in viewer.layers:
            out.append(viewer.layers[name])
    return out


def show_result(
    viewer: Any,
    layer_or_data: Any,
    *,
    source: Any = None,
    axis_labels: tuple[str, ...] | None = None,
    layer_type: str = "image",
    hide: Any = None,
    frame: bool = True,
    select: bool = True,
    **kwargs: Any,
) -> Any:
    """Put a result in view: add (or update) its layer, move the dims into it, frame it.

    ``layer_or_data`` is a layer (already added, or not yet) or an array; an array becomes a
    ``layer_type`` layer (``"image"`` or ``"labels"``) built with ``kwargs`` (``name``,
    ``metadata``, ``scale``, ``colormap``…). An existing layer of the same ``name`` and number
    of dimensions is updated in place (live previews), otherwise a new layer is added.
    Then: every axis the canvas does not display moves to the middle slice of the result;
    ``source`` (a layer, a name or a list; the layer the result came from) and ``hide`` are
    hidden, never removed; the axis labels become ``axis_labels`` (default: from the layer's
    ``metadata["kind"]``: angle/row/col for projections, row/angle/col for sinograms, z/y/x
    for volumes), on the layer and on the viewer's sliders, so a volume's slider never shows an
    angle; the view is fitted to the result (``frame``); images get contrast limits from their
    own data when none were given; warnings listed in ``metadata["warnings"]`` are shown as
    napari warnings. Returns the layer.

    Example (in a widget, after a task returned ``volume``)::

        layer = show_result(viewer, volume, name="tooth fbp", source=projections_layer,
                            metadata={"task": "reconstruct", "kind": "volume"})
    """
    from napari.layers import Layer
    from napari.utils.notifications import show_warning

    from ..io.contrast import estimate_contrast_limits

    if isinstance(layer_or_data, Layer):
        layer = layer_or_data
        for key, value in kwargs.items():
            setattr(layer, key, value)
        if layer not in viewer.layers:
            viewer.add_layer(layer)
    else:
        data = layer_or_data
        name = kwargs.get("name")
        if layer_type == "image" and "contrast_limits" not in kwargs and getattr(data, "size", 0):
            kwargs["contrast_limits"] = estimate_contrast_limits(data)
        existing = viewer.layers[name] if name is not None and name in viewer.layers else None
        if (
            existing is not None
            and existing._type_string == layer_type
            and existing.ndim == getattr(data, "ndim", None)
        ):
            layer = existing
            layer.data = data
            for key, value in kwargs.items():
                if key != "name":
                    setattr(layer, key, value)
        else:
            if existing is not None:
                viewer.layers.remove(existing)
            layer = getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    layer.visible = True

    labels = tuple(axis_labels) if axis_labels is not None else axis_labels_for(layer.ndim, layer.metadata)
    layer.axis_labels = labels
    offset = viewer.dims.ndim - layer.ndim
    if offset >= 0:
        dims_labels = list(viewer.dims.axis_labels)
        dims_labels[offset:] = labels
        viewer.dims.axis_labels = tuple(dims_labels)

    for other in _as_layers(viewer, source) + _as_layers(viewer, hide):
        if other is not layer:
            other.visible = False

    # the middle of the result, in world coordinates, for each axis the canvas does not show
    shape = layer.level_shapes[0] if getattr(layer, "multiscale", False) else layer.data.shape
    middle = layer.data_to_world(np.asarray(shape[: layer.ndim], dtype=float) // 2)
    for axis in viewer.dims.not_displayed:
        layer_axis = axis - offset
        if 0 <= layer_axis < layer.ndim:
            viewer.dims.set_point(axis, float(middle[layer_axis]))

    if frame:
        viewer.reset_view(layers=[layer])
    if select:
        viewer.layers.selection.active = layer
    for message in layer.metadata.get("warnings") or ():
        show_warning(f"napari-tomoml: {message}")
    return layer


def warn(metadata: dict[str, Any], message: str) -> None:
    """Record a warning (something clamped or guessed) in a result's ``metadata["warnings"]``.

    :func:`show_result` shows each recorded warning when the result lands.
    """
    warnings = list(metadata.get("warnings") or [])
    if message not in warnings:
        warnings.append(message)
    metadata["warnings"] = warnings
