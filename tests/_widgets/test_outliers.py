"""Outliers widget: a stack's map and scores, linked both ways with the viewer, lasso groups in features."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari


@pytest.fixture
def stack():
    """120 noise slices of 16x16, three of them (7, 50, 93) with a bright blob."""
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (120, 16, 16)).astype(np.float32)
    data[[7, 50, 93]] += 6 * np.outer(np.hanning(16), np.hanning(16)).astype(np.float32)
    return data


@pytest.fixture
def computed(make_napari_viewer, qtbot, stack, notifications):
    viewer = make_napari_viewer()
    layer = viewer.add_image(stack, name="slices", translate=(10, 0, 0))
    widget = dock(viewer, "Outliers")
    widget.layer_combo.set_layer("slices")
    widget.features_combo.setCurrentText("spectrum")
    widget.method_combo.setCurrentText("pca")
    widget.compute_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    return viewer, layer, widget


def test_scores_and_map_land_in_layer_features(computed):
    viewer, layer, widget = computed
    table = widget.table_layer
    assert table.metadata == {"task": "outliers", "source": "slices"}
    features = table.features
    assert len(features) == 120
    assert {"x", "y", "score", "lof", "group", "mean", "band1"} <= set(features.columns)
    assert set(np.argsort(-features["score"].to_numpy())[:3]) == {7, 50, 93}
    assert widget.colour_combo.findText("band3") >= 0
    assert not widget.density_check.isChecked()  # few points: a scatter plot
    assert (widget.point_colours >= 0).all()  # every item drawn as a point


def test_selecting_a_point_moves_the_viewer(computed):
    viewer, layer, widget = computed
    x, y = widget.columns["x"][50], widget.columns["y"][50]
    assert widget.select_at(x, y) == 50
    assert widget.current_item() == 50
    assert viewer.dims.point[0] == 10 + 50  # the layer is translated by 10 along the items
    # a click far from every point selects nothing and leaves the viewer where it is
    assert widget.select_at(x + 1e6, y, tolerance=1.0) is None
    assert widget.current_item() == 50


def test_moving_the_slider_highlights_the_point(computed):
    viewer, layer, widget = computed
    viewer.dims.set_point(0, 10 + 93)
    assert widget.highlighted == 93
    x, y = widget.ring.getData()
    assert (x[0], y[0]) == (widget.columns["x"][93], widget.columns["y"][93])


def test_lasso_group_lands_in_layer_features_and_becomes_a_layer(computed, tmp_path):
    viewer, layer, widget = computed
    xy = np.column_stack([widget.columns["x"], widget.columns["y"]])
    centre = xy[[7, 50, 93]].mean(0)
    r = 1.5 * np.linalg.norm(xy[[7, 50, 93]] - centre, axis=1).max()
    polygon = [(centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 24)]
    inside = widget.lasso_select(polygon)
    expected = np.flatnonzero(np.hypot(*(xy - centre).T) < r * np.cos(np.pi / 24))
    assert set(expected) <= set(inside.tolist())
    groups = widget.table_layer.features["group"].to_numpy()
    assert set(np.flatnonzero(groups == 1)) == set(inside.tolist())
    assert {7, 50, 93} <= set(inside.tolist())
    # a second lasso makes a second group
    widget.lasso_select([(xy[0, 0] - 1e-6, xy[0, 1] - 1e-6), (xy[0, 0] + 1e-6, xy[0, 1] - 1e-6),
                         (xy[0, 0], xy[0, 1] + 1e-6)])
    assert widget.table_layer.features["group"][0] == 2
    widget.lasso_select(polygon)
    new = widget.selected_to_layer()
    assert new.data.shape == (len(inside), 16, 16)
    assert np.array_equal(new.data, layer.data[np.sort(inside)])
    assert new.metadata["items"] == sorted(inside.tolist())
    # CSV export carries the groups
    out = widget.export_csv(tmp_path / "table.csv")
    header, *rows = out.read_text().splitlines()
    assert header.split(",")[-1] == "group" and len(rows) == 120


def test_colour_by_and_density_mode(computed):
    viewer, layer, widget = computed
    widget.colour_combo.setCurrentText("group")
    widget.colour_combo.setCurrentText("band2")
    levels = widget.point_colours
    band2 = widget.columns["band2"]
    assert len(set(levels)) > 5  # a colour per value, not one for all
    assert levels[np.argmax(band2)] > levels[np.argmin(band2)]
    widget.density_check.setChecked(True)
    assert widget.density.isVisible() and (widget.point_colours == -1).all()
    image = widget.density.image
    assert image.shape == (200, 200) and np.isclose(np.expm1(image).sum(), 120)


def test_hundred_thousand_points_open_as_density(make_napari_viewer):
    """100k points: the map opens as a density image; as points, each is coloured by its score."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((100_000, 2, 2), np.float32), name="patches")
    widget = dock(viewer, "Outliers")
    rng = np.random.default_rng(0)
    columns = {"item": np.arange(100_000), "x": rng.normal(size=100_000), "y": rng.normal(size=100_000),
               "score": rng.random(100_000), "lof": rng.random(100_000)}
    widget.set_table(columns, layer)
    assert widget.density_check.isChecked() and (widget.point_colours == -1).all()
    widget.density_check.setChecked(False)
    levels = widget.point_colours
    assert (levels >= 0).all()
    assert np.corrcoef(levels, columns["score"])[0, 1] > 0.99  # coloured by score
    assert widget.select_at(columns["x"][12345], columns["y"][12345]) == 12345
    assert viewer.dims.point[0] == 12345


def test_compute_without_a_layer_says_so(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Outliers")
    widget.compute()
    assert "add a 3-D image layer" in widget.info.text()
