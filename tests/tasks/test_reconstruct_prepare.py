"""The beamline pre-processing of the Reconstruct widget: phase retrieval on a slab, rings, 360°, padding."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml.progress import run_to_end
from napari_tomoml.recon import project
from napari_tomoml.recon.phase import margin_px, retrieve_phase
from napari_tomoml.sim.phantom import shepp_logan_3d
from napari_tomoml.tasks.reconstruct import (
    MAX_CENTER_CHECK_SLICES,
    center_check_steps,
    plan_center_check,
    prepare_steps,
    reconstruct_raw_steps,
)

PHASE = {"pixel_size_um": 1.0, "distance_mm": 20.0, "energy_kev": 20.0, "delta_beta": 50.0}


@pytest.fixture(scope="module")
def scan():
    theta = np.linspace(0, np.pi, 48, endpoint=False)
    proj = np.asarray(project(shepp_logan_3d(32, 40) * 0.05, theta, device="cpu"), np.float32)
    return proj, theta


def test_phase_on_a_slab_equals_the_whole_then_cropped(scan):
    proj, theta = scan
    assert 2 * margin_px(**PHASE) < 40  # the slab's context really is a part of the rows
    whole = retrieve_phase(np.exp(-proj), **PHASE, device="cpu")
    slab, *_ = run_to_end(prepare_steps(proj, slice(18, 22), theta, {}, False, None, phase=PHASE))
    np.testing.assert_allclose(slab, whole[:, 18:22], atol=2e-3)


def test_padding_keeps_the_field_of_view(scan):
    proj, theta = scan
    plain, meta = run_to_end(reconstruct_raw_steps(proj, slice(19, 21), theta, {}, False, {"device": "cpu"}))
    padded, meta_p = run_to_end(
        reconstruct_raw_steps(proj, slice(19, 21), theta, {}, False, {"device": "cpu", "prepare": {"pad": 16}})
    )
    assert padded.shape == plain.shape == (2, 32, 32)
    assert meta_p["parameters"]["prepare"] == {"pad": 16} and meta_p["parameters"]["rows"] == [19, 21]
    inner = np.hypot(*np.mgrid[:32, :32] - 15.5) < 12
    assert np.abs(padded[:, inner] - plain[:, inner]).max() < 0.05 * np.abs(plain).max()


def test_rings_and_stitch_run_in_the_pipeline():
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    proj = np.asarray(project(shepp_logan_3d(32, 2) * 0.05, theta, device="cpu"), np.float32)[..., :24]
    proj[:, :, 5] += 0.3  # a stripe
    out, th, c, n, done = run_to_end(
        prepare_steps(proj, slice(0, 2), theta, {}, False, 16.0, rings=True, stitch_360=True)
    )
    assert out.shape == (48, 2, 32) and n == 32 and c == 16.0 and len(th) == 48
    assert done == {"rings": "sorting", "stitch_360": True}


def test_centre_check_is_capped_and_batched(scan):
    proj, theta = scan
    centers, warnings = plan_center_check(16.0, 50, 0.1, 32)
    assert len(centers) <= MAX_CENTER_CHECK_SLICES and centers.min() >= 0 and centers.max() <= 32
    assert any("clipped" in w for w in warnings) and any("widened" in w for w in warnings)
    steps = center_check_steps(proj, 20, theta, np.arange(12, 20, 0.5), "ramp", {}, False)
    seen = [p.done for p in iter(lambda: next(steps, None), None)]
    assert len(seen) >= 3  # a yield (a chance to cancel) between batches
    with pytest.raises(Exception, match="too many"):
        run_to_end(center_check_steps(proj, 20, theta, np.arange(1001) * 0.01, "ramp", {}, False))
