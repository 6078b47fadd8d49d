"""Flat/dark normalisation, −log and zinger removal."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.io import Scan
from napari_tomoml.prep import normalize, remove_zingers


@pytest.fixture
def raw(rng):
    """Counts of a known transmission: dark 100, flat 1100, object transmitting 5..95 %."""
    transmission = rng.uniform(0.05, 0.95, size=(9, 5, 7))
    darks = np.full((3, 5, 7), 100.0)
    flats = np.full((4, 5, 7), 1100.0)
    proj = 100.0 + 1000.0 * transmission
    return proj.astype(np.float32), flats, darks, -np.log(transmission)


def test_line_integrals_from_flats_and_darks(raw):
    proj, flats, darks, expected = raw
    before = proj.copy()
    out = normalize(proj, flats, darks)
    np.testing.assert_array_equal(proj, before)  # the input is never modified
    assert out.dtype == np.float32 and out.shape == proj.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_scan_input_uses_its_flats_and_darks(raw):
    proj, flats, darks, expected = raw
    scan = Scan(proj.astype(np.uint16), np.linspace(0, np.pi, 9), flats, darks)
    np.testing.assert_allclose(normalize(scan), normalize(proj.astype(np.uint16), flats, darks))


def test_median_reference_ignores_one_bad_flat(raw):
    proj, flats, darks, expected = raw
    flats = flats.copy()
    flats[0] = 60000.0  # e.g. a frame with a beam spike
    np.testing.assert_allclose(normalize(proj, flats, darks), expected, rtol=1e-4, atol=1e-5)


def test_zero_negative_and_dead_pixels_stay_finite(raw):
    proj, flats, darks, _ = raw
    proj = proj.copy()
    proj[0, 0, 0] = 100.0  # exactly dark: transmission 0
    proj[0, 0, 1] = 0.0  # below dark: negative transmission
    flats = flats.copy()
    flats[:, 1, 1] = 100.0  # dead pixel: flat == dark
    out = normalize(proj, flats, darks, min_transmission=1e-4)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 0, :2], -np.log(1e-4), rtol=1e-5)
    assert (out[:, 1, 1] == 0).all()


def test_transmission_input_without_flats(rng):
    t = rng.uniform(0.1, 1.2, size=(3, 4, 4)).astype(np.float32)
    before = t.copy()
    np.testing.assert_allclose(normalize(t), -np.log(before), rtol=1e-5)
    np.testing.assert_array_equal(t, before)  # float32 input: the result is not written over it


def test_lazy_input_chunked_and_out(raw):
    proj, flats, darks, _ = raw
    expected = normalize(proj, flats, darks)
    lazy = da.from_array(proj, chunks=(2, 5, 7))
    np.testing.assert_array_equal(normalize(lazy, flats, darks), expected)
    np.testing.assert_array_equal(normalize(proj, flats, darks, chunk=4), expected)
    out = np.zeros(proj.shape, np.float32)
    assert normalize(proj, flats, darks, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_progress_reports_each_block(raw):
    proj, flats, darks, _ = raw
    seen = []
    normalize(proj, flats, darks, chunk=4, progress=seen.append)
    assert [(p.done, p.total) for p in seen] == [(4, 9), (8, 9), (9, 9)]


def test_zingers_removed_before_normalising(raw):
    proj, flats, darks, expected = raw
    proj = proj.copy()
    proj[2, 2, 3] += 5000.0
    out = normalize(proj, flats, darks, zinger_threshold=2000.0)
    assert out[2, 2, 3] > 0 and abs(out[2, 2, 3] - np.median(expected[2, 1:4, 2:5])) < 1.5
    others = np.ones(proj.shape, bool)
    others[2, 2, 3] = False
    np.testing.assert_allclose(out[others], expected[others], rtol=1e-4, atol=1e-5)


def test_remove_zingers_only_touches_bright_outliers(rng):
    frame = rng.normal(100, 1, size=(8, 8)).astype(np.float32)
    frame[4, 4] = 500
    frame[1, 1] = -300  # dark outliers are not zingers
    cleaned = remove_zingers(frame, threshold=50)
    assert abs(cleaned[4, 4] - 100) < 5 and cleaned[1, 1] == -300
    np.testing.assert_array_equal(np.delete(cleaned.ravel(), 4 * 8 + 4), np.delete(frame.ravel(), 4 * 8 + 4))
    with pytest.raises(InputError, match="positive"):
        remove_zingers(frame, threshold=0)


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((np.full((2, 3, 3), np.nan),), {}, "NaN or inf"),
        ((np.where(np.eye(3)[None] > 0, np.inf, 0.5),), {}, "3 NaN or inf"),
        ((np.ones((3, 3)),), {}, "expected \\(angles, rows, cols\\)"),
        ((np.ones((2, 3, 3)), np.ones((1, 3, 4))), {}, "flats have shape"),
        ((np.ones((2, 3, 3)), np.ones((1, 3, 3)) * 2, np.ones((2, 2, 3))), {}, "darks have shape"),
        ((np.ones((2, 3, 3)), np.full((1, 3, 3), np.nan)), {}, "flats contain NaN"),
        ((np.full((2, 3, 3), 500.0),), {}, "give flats"),
        ((np.full((2, 3, 3), 0.5), None, np.zeros((3, 3))), {}, "without flats"),
        ((np.ones((2, 3, 3)), np.ones((1, 3, 3)), np.ones((1, 3, 3))), {}, "nowhere brighter"),
        ((np.ones((2, 3, 3)),), {"min_transmission": 0}, "positive"),
    ],
)
def test_bad_input_raises_input_error(args, kwargs, words):
    with pytest.raises(InputError, match=words):
        normalize(*args, **kwargs)


def test_error_names_the_scan_file():
    scan = Scan(np.full((2, 3, 3), np.nan, np.float32), [0, 1], metadata={"source": "/data/run_42.h5"})
    with pytest.raises(InputError, match="run_42.h5"):
        normalize(scan)
