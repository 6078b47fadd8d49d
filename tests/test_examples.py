"""Every script in examples/ runs headless (napari.run not called; the viewer is the test fixture's)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytest.importorskip("napari")

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.napari
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, make_napari_viewer, monkeypatch, tmp_path):
    import napari
    import numpy as np

    from napari_tomoml.io.scan import Scan
    from napari_tomoml.io.writers import write_hdf5

    # a small raw scan (a disc) instead of the real tooth, to keep the test fast
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    x = np.arange(48) + 0.5 - 24
    line = 0.04 * 2 * np.sqrt(np.clip(14.0**2 - x**2, 0, None))
    counts = np.broadcast_to(1000 * np.exp(-line), (60, 3, 48)).astype(np.float32)
    flats = np.full((2, 3, 48), 1000, np.float32)
    monkeypatch.setenv("TOMOML_EXAMPLE_SCAN", str(write_hdf5(tmp_path / "disc.h5", Scan(counts, theta, flats))))
    monkeypatch.delenv("TOMOML_EXAMPLE_FOLDER", raising=False)
    viewers = []
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: viewers.append(make_napari_viewer()) or viewers[-1])
    namespace = runpy.run_path(str(script), run_name="example")
    assert viewers and len(viewers[0].layers) >= 2
    for layer in viewers[0].layers:
        assert layer.data.size and layer.data.dtype.kind == "f"
    if "summary" in namespace:  # the batch example: the truncated scan failed, the rest done
        assert namespace["summary"]["status"] == ["ok", "ok", "failed"]
