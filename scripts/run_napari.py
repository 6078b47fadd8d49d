"""Open napari with napari-tomoml: the simulated sample scan, the plugin's widgets, a live preview.

    python scripts/run_napari.py                      # interactive (needs a display)
    python scripts/run_napari.py --screenshot out.png # headless (under xvfb-run): save and exit

``make run`` calls this (with ``--screenshot`` when there is no display). The screenshot shows
the whole window as a person would see it: the layer list, the docked Load / Reconstruct /
Denoise / Train widgets, the normal-dose projections and the reconstruction preview of one row.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save a screenshot of the whole window to this PNG and exit")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the preview")
    args = parser.parse_args(argv)

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
