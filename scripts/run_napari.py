"""Open napari with napari-tomoml: the simulated sample scan, the plugin's widgets, a live preview.

    python scripts/run_napari.py                      # interactive (needs a display)
    python scripts/run_napari.py --screenshot out.png # headless (under xvfb-run): save and exit
    python scripts/run_napari.py --tour DIR [--scan tooth.h5]  # each GUI step on a real scan, PNGs in DIR

``make run`` calls this (with ``--screenshot`` when there is no display). The screenshot shows
the whole window as a person would see it: the layer list, the docked Load / Reconstruct /
Denoise / Train widgets (tabbed, so the window fits a 1600×1000 screen), the normal-dose
projections and the reconstruction preview of one row. napari-tomoml is made the preferred reader
for HDF5/NeXus files, so File ▸ Open and drag-and-drop of a scan need no choice of plugin.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PLUGIN = "napari-tomoml"
WINDOW_SIZE = (1560, 960)


def _wait(app, condition, timeout: float) -> bool:
    """Process Qt events until ``condition()`` holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    app.processEvents()
    return condition()


def build_viewer(show: bool = True):
    """A viewer with the sample scan loaded, the widgets docked and a preview on its way."""
    import napari

    from napari.settings import get_settings

    from napari_tomoml._reader import prefer_tomoml_reader

    prefer_tomoml_reader(get_settings())
    viewer = napari.Viewer(title="napari-tomoml", show=show)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    viewer.open_sample(PLUGIN, "phantom")
    viewer.layers["phantom (ground truth)"].visible = False

    widgets = {}
    for name in ("Load scan", "Denoise", "Train TomoGAN", "Reconstruct"):
        _, widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=name != "Load scan")
    recon = widgets["Reconstruct"]
    projections = viewer.layers["projections (normal dose)"]
    recon.layer_combo.set_layer(projections)
    viewer.layers.selection.active = projections
    viewer.dims.set_point(0, 0)
    return viewer, widgets


def _shot(viewer, app, path: Path, dock_name: str | None = None) -> Path:
    """Screenshot of the whole window, with the dock ``dock_name`` raised in the tab group."""
    if dock_name is not None:
        docks = viewer.window._wrapped_dock_widgets
        next(d for key, d in docks.items() if dock_name in key).raise_()
    _wait(app, lambda: False, 0.8)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path)
    return path


def tour(out: Path, scan: Path, timeout: float) -> int:
    """Load a real scan, show its sinograms, centre check, reconstruct, denoise: a PNG per step."""
    from qtpy.QtWidgets import QApplication

    viewer, widgets = build_viewer(show=True)
    app = QApplication.instance()
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    out.mkdir(parents=True, exist_ok=True)
    load, recon, denoise = widgets["Load scan"], widgets["Reconstruct"], widgets["Denoise"]

    def done(runner) -> bool:
        return _wait(app, lambda: not runner.running, timeout) and runner.last_status == "ok"

    load.set_path(scan)
    ok = done(load.runner)
    load.load()
    ok &= done(load.runner)
    _shot(viewer, app, out / "1_load_projections.png", "Load scan")
    load.toggle_view()
    _shot(viewer, app, out / "2_load_sinograms.png", "Load scan")
    load.toggle_view()
    recon.live_check.setChecked(False)
    recon.find_centre()
    ok &= done(recon.runner)
    recon.centre_check()
    ok &= done(recon.runner)
    _shot(viewer, app, out / "3_centre_check.png", "Reconstruct")
    recon.check_half_range.setValue(50.0)
    recon.check_step.setValue(0.1)
    recon.centre_check()
    ok &= done(recon.runner)
    _shot(viewer, app, out / "4_centre_check_capped.png", "Reconstruct")
    recon.device_combo.setCurrentText("cpu")
    recon.reconstruct()
    ok &= done(recon.runner)
    _shot(viewer, app, out / "5_reconstruct.png", "Reconstruct")
    denoise.layer_combo.refresh()
    denoise.device_combo.setCurrentText("cpu")
    denoise.denoise()
    ok &= done(denoise.runner)
    _shot(viewer, app, out / "6_denoise.png", "Denoise")
    viewer.close()
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save a screenshot of the whole window to this PNG and exit")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the preview")
    parser.add_argument("--tour", type=Path, default=None,
                        help="run each GUI step on --scan and save a screenshot per step in this folder")
    parser.add_argument("--scan", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared"
                        / "data" / "real" / "tooth.h5", help="the scan of the --tour (default: the tooth)")
    args = parser.parse_args(argv)
    if args.tour is not None:
        return tour(args.tour, args.scan, args.timeout)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_tomoml._widgets.reconstruct import PREVIEW_LAYER

    viewer, widgets = build_viewer(show=True)
    app = QApplication.instance()
    recon = widgets["Reconstruct"]
    recon.update_preview()
    if args.screenshot is None:
        napari.run()
        return 0

    ok = _wait(app, lambda: PREVIEW_LAYER in viewer.layers and recon._preview_worker is None, args.timeout)
    if not ok:
        print(f"run_napari: the preview did not appear within {args.timeout:.0f} s", file=sys.stderr)
    viewer.reset_view()
    _wait(app, lambda: False, 1.0)  # let the canvas and the docks settle
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.screenshot), canvas_only=False, flash=False)
    print(args.screenshot)
    viewer.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
