"""Small helpers the widgets share: layer pickers kept in sync with the viewer, and `show_result`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QWidget


class LayerCombo(QComboBox):
    """A combo box listing the viewer's image layers (optionally filtered), kept up to date.

    Until someone picks a layer by hand, it follows the most plausible one: the highest
    ``prefer(layer)`` score, the newest layer among equals (a new result outranks its source
    when ``prefer`` says so).
    """

    def __init__(
        self,
        viewer: Any,
        *,
        ndim: int | None = 3,
        accept: Callable[[Any], bool] | None = None,
        prefer: Callable[[Any], float] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._ndim = ndim
        self._accept = accept
        self._prefer = prefer
        self.chosen_by_hand = False
        self.activated.connect(self._picked)
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
        layers = [layer for layer in self.viewer.layers if self._ok(layer)]
        names = [layer.name for layer in layers]
        target = current if current in names and self.chosen_by_hand else self._best(layers)
        if names == [self.itemText(i) for i in range(self.count())] and target == current:
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if target in names:
            self.setCurrentIndex(names.index(target))
        self.blockSignals(False)
        if target != current:
            self.currentIndexChanged.emit(self.currentIndex())

    def _best(self, layers: list[Any]) -> str | None:
        if not layers:
            return None
        if self._prefer is None:
            current = self.currentText()
            return current if current in [la.name for la in layers] else layers[0].name
        scores = [(float(self._prefer(layer)), i) for i, layer in enumerate(layers)]
        return layers[max(scores)[1]].name

    def _picked(self, *_: Any) -> None:
        self.chosen_by_hand = True

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
        """Choose a layer (as a person would: it stays chosen when others arrive)."""
        name = getattr(layer_or_name, "name", layer_or_name)
        self.chosen_by_hand = True
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


def _text(layer: Any) -> str:
    meta = layer.metadata
    return " ".join(str(x) for x in (layer.name, meta.get("source", ""), meta.get("role", ""))).lower()


_NOISY_WORDS = ("low dose", "low-dose", "lowdose", "noisy", "_ns", " ns", "low")
_CLEAN_WORDS = ("ground truth", "clean", "_gt", " gt", "truth", "normal dose", "normal", "high dose")


def projections_score(layer: Any) -> float:
    """Reconstruct's default: normalised projections first, then raw ones; the newest among equals."""
    meta = layer.metadata
    return 2.0 if meta.get("normalized") or meta.get("kind") == "projections" else 1.0


def volume_score(layer: Any) -> float:
    """Denoise's default: a reconstruction, then any volume; never a one-slice preview or a phantom."""
    meta = layer.metadata
    if meta.get("task") == "preview":
        return -1.0
    if "ground truth" in _text(layer) or "phantom" in layer.name.lower():
        return 0.0
    if meta.get("task") == "reconstruct":
        return 3.0 + (0.5 if any(w in _text(layer) for w in _NOISY_WORDS) else 0.0)
    return 2.0 if layer.ndim == 3 else 1.0


def noisy_score(layer: Any) -> float:
    """Train's noisy input: low-dose / noisy by name or metadata, never the ground truth."""
    text = _text(layer)
    if any(w in text for w in _CLEAN_WORDS) or "phantom" in text and "low" not in text:
        return -1.0
    score = volume_score(layer)
    if any(w in text for w in _NOISY_WORDS) or layer.metadata.get("role") == "noisy":
        score += 5.0
    return score


def clean_partner_score(noisy_name: Callable[[], str]) -> Callable[[Any], float]:
    """Train's clean input: the layer named like the noisy one with low→normal, else clean by name."""

    def score(layer: Any) -> float:
        noisy = (noisy_name() or "").lower()
        name = layer.name.lower()
        if name == noisy:
            return -2.0
        text = _text(layer)
        for a, b in (("low dose", "normal dose"), ("low-dose", "normal-dose"), ("noisy", "clean"), ("low", "high")):
            if a in noisy and noisy.replace(a, b) == name:
                return 10.0
        if any(w in text for w in _CLEAN_WORDS) or layer.metadata.get("role") == "clean":
            return 5.0 + (1.0 if "ground truth" in text else 0.0)
        if any(w in text for w in _NOISY_WORDS):
            return -1.0
        return volume_score(layer)

    return score


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
    Then: the layer moves to the top of the layer list; every axis the canvas does not display
    moves to the middle slice of the result;
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
            and type(existing).__name__.lower() == layer_type
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
    # on top: drawn over the rest, and napari names the sliders after the newest labelled layer
    index = list(viewer.layers).index(layer)
    if index != len(viewer.layers) - 1:
        viewer.layers.move(index, len(viewer.layers))

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
