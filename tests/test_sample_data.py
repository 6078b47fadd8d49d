"""Sample data: generated (never downloaded), three layers with angles in the metadata."""

from __future__ import annotations


import numpy as np
import pytest

from napari_tomoml import _sample_data


def test_phantom_scan_layers():
    layers = _sample_data.make_phantom_scan()
    assert [kind for _, _, kind in layers] == ["image"] * 3
    (phantom, pk, _), (normal, nk, _), (low, lk, _) = layers
    assert phantom.shape == (32, 128, 128) and phantom.dtype == np.float32
    assert normal.shape == low.shape == (180, 32, 128)
    for meta in (nk["metadata"], lk["metadata"]):
        theta = meta["theta"]
        assert theta.shape == (180,) and theta[0] == 0 and theta[-1] < np.pi  # radians, [0, π)
        assert meta["normalized"] is True
        assert meta["center"] == pytest.approx(64.0)
    assert lk["metadata"]["dose_i0"] < nk["metadata"]["dose_i0"]
    # low dose is noisier than normal dose, relative to the same clean projections
    clean = _sample_data.phantom_scan()["clean"]
    assert np.std(low - clean) > 2 * np.std(normal - clean)
    assert normal.max() == pytest.approx(_sample_data.MAX_LINE_INTEGRAL, rel=0.1)


def test_generation_is_cached_and_copies_are_returned():
    first = _sample_data.make_phantom_scan()
    hits = _sample_data._simulate.cache_info().hits
    second = _sample_data.make_phantom_scan()
    assert _sample_data._simulate.cache_info().hits == hits + 1  # generated once, then reused
    first[1][0][:] = -1  # editing one layer's data must not change the next sample
    assert second[1][0].min() > -1
    assert _sample_data.make_phantom_scan()[1][0].min() > -1


@pytest.mark.napari
def test_open_sample_in_napari(make_napari_viewer):
    pytest.importorskip("napari")
    viewer = make_napari_viewer()
    viewer.open_sample("napari-tomoml", "phantom")
    names = [layer.name for layer in viewer.layers]
    assert names == ["phantom (ground truth)", "projections (normal dose)", "projections (low dose)"]
    assert viewer.layers["projections (low dose)"].metadata["theta"].shape == (180,)
