"""show_result: a result lands in view (dims inside it, framed, labelled, its source hidden)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml._widgets._layers import axis_labels_for, show_result, warn

from .conftest import in_view

pytestmark = pytest.mark.napari


def test_volume_lands_in_view_over_projections(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    proj = viewer.add_image(rng.random((180, 8, 32), dtype=np.float32), name="proj", metadata={"kind": "projections"})
    viewer.dims.set_point(0, 90)  # looking at angle 90, as after scrolling the projections
    volume = rng.random((2, 32, 32)).astype(np.float32)
    meta = {"task": "reconstruct", "kind": "volume"}
    warn(meta, "centre 5000 px clamped to 32 px")
    layer = show_result(viewer, volume, name="vol", source=proj, metadata=meta)
    assert not proj.visible and "proj" in viewer.layers  # hidden, not removed
    assert viewer.dims.axis_labels == ("z", "y", "x") and layer.axis_labels == ("z", "y", "x")
    assert viewer.dims.point[0] in (0.0, 1.0)
    shown = in_view(viewer, layer)
    np.testing.assert_array_equal(shown, volume[int(viewer.dims.point[0])])
    # framed: the camera looks at the middle of the volume, not of the larger projections
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (15.5, 15.5), atol=0.6)
    assert layer.metadata["warnings"] == ["centre 5000 px clamped to 32 px"]
    lo, hi = layer.contrast_limits
    assert 0 <= lo < hi <= 1  # from the volume's own values


def test_update_in_place_labels_by_kind_and_labels_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    a = show_result(viewer, np.ones((4, 5, 6), np.float32) * np.arange(6), name="r", metadata={"kind": "sinograms"})
    assert viewer.dims.axis_labels == ("row", "angle", "col")
    b = show_result(viewer, np.ones((4, 5, 6), np.float32) * np.arange(6) * 2, name="r", metadata={"kind": "sinograms"})
    assert a is b and len(viewer.layers) == 1 and b.data.max() == 10
    assert viewer.dims.point[0] == 2
    assert axis_labels_for(2, {}) == ("y", "x")
    assert axis_labels_for(3, {"task": "centre check"}) == ("centre", "y", "x")
    assert axis_labels_for(4, {"kind": "volume"}) == ("axis 0", "z", "y", "x")
    # a labels result, and an existing layer brought back into view
    img = viewer.add_image(np.random.default_rng(1).random((6, 16, 16)), name="img")
    labels = show_result(viewer, (img.data > 0.5).astype(np.int32), name="seg", layer_type="labels", source=img)
    assert type(labels).__name__ == "Labels" and not img.visible
    again = show_result(viewer, img, source=labels)
    assert again is img and img.visible and not labels.visible
    in_view(viewer, img)
