"""Fixtures for the widget tests (napari + Qt under pytest-xvfb)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

PLUGIN = "napari-tomoml"


@pytest.fixture
def notifications(monkeypatch) -> list[str]:
    """Error notifications the widgets showed (instead of raising)."""
    from napari_tomoml._widgets import _worker

    shown: list[str] = []
    monkeypatch.setattr(_worker, "show_error", shown.append)
    monkeypatch.setattr(_worker, "show_info", lambda message: None)
    return shown


@pytest.fixture
def disc_scan(tmp_path) -> Path:
    """A small raw DXchange scan: a uniform disc (radius 10 px) centred on the detector, flats, darks."""
    from napari_tomoml.io.scan import Scan
    from napari_tomoml.io.writers import write_hdf5

    n_angles, n_rows, n_cols = 48, 4, 32
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    x = np.arange(n_cols) + 0.5 - n_cols / 2
    line = 0.05 * 2 * np.sqrt(np.clip(10.0**2 - x**2, 0, None))
    flat, dark = 1000.0, 10.0
    proj = np.broadcast_to(dark + (flat - dark) * np.exp(-line), (n_angles, n_rows, n_cols)).astype(np.float32)
    flats = np.full((3, n_rows, n_cols), flat, np.float32)
    darks = np.full((2, n_rows, n_cols), dark, np.float32)
    return write_hdf5(tmp_path / "disc.h5", Scan(proj, theta, flats, darks))


def dock(viewer, widget_name: str):
    """Dock a widget through the plugin's manifest, as napari's Plugins menu does."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, widget_name)
    return widget


def wait_done(qtbot, runner, timeout: int = 60_000) -> str:
    """Wait for the runner's task to finish and return its status."""
    qtbot.waitUntil(lambda: not runner.running, timeout=timeout)
    return runner.last_status


@pytest.fixture(autouse=True)
def _workers_finish():
    """Let every worker a test started end before the next test (and its viewer) begins."""
    yield
    from superqt.utils import WorkerBase

    WorkerBase.await_workers(30_000)


def in_view(viewer, layer) -> np.ndarray:
    """The 2-D slice of ``layer`` the canvas shows now; asserts it is visible, in range and non-empty."""
    assert layer in viewer.layers and layer.visible
    point = np.asarray(viewer.dims.point)[-layer.ndim :]
    index = np.round(layer.world_to_data(point)).astype(int)
    for axis in viewer.dims.not_displayed:
        a = axis - (viewer.dims.ndim - layer.ndim)
        if a >= 0:
            assert 0 <= index[a] < layer.data.shape[a], f"dims point {point} is outside layer {layer.name}"
    layer.refresh()
    view = np.asarray(layer._slice.image.view) if hasattr(layer, "_slice") else np.asarray(layer._data_view)
    assert view.size > 0 and np.ptp(view[np.isfinite(view)]) > 0, f"layer {layer.name} shows an empty slice"
    return view
