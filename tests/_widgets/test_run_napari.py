"""``make run``'s script: the viewer with sample data, docked widgets and a preview, as a screenshot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.napari

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_napari.py"


def test_screenshot_shows_layers_widgets_and_preview(tmp_path, capsys):
    import imageio.v3 as iio

    spec = importlib.util.spec_from_file_location("run_napari", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "shot.png"
    assert module.main(["--screenshot", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
    image = iio.imread(out)
    assert image.shape[0] > 500 and image.shape[1] > 1000  # the whole window, not just the canvas
    gray = image[..., :3].mean(axis=-1)
    assert gray.std() > 20 and (gray > 200).mean() > 0.005  # not black: a bright phantom edge is visible


@pytest.mark.slow
def test_docks_are_tabbed_and_the_window_fits_1600_by_1000(qtbot):
    from napari.settings import get_settings

    spec = importlib.util.spec_from_file_location("run_napari", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    viewer, widgets = module.build_viewer(show=True)
    try:
        qtbot.wait(200)
        window = viewer.window._qt_window
        assert window.width() <= 1600 and window.height() <= 1000
        docks = [d for key, d in viewer.window._wrapped_dock_widgets.items() if "napari-tomoml" in key]
        assert len(docks) == 4
        assert len(window.tabifiedDockWidgets(docks[0])) == 3  # one tab group, not a tall column
        for widget in widgets.values():
            assert widget.minimumSizeHint().height() < 900
        assert get_settings().plugins.extension2reader.get("*.h5") == "napari-tomoml"
    finally:
        viewer.close()
