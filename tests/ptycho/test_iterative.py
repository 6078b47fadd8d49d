"""ePIE (torch, batched): recovers a known object; probe refinement; batched ≈ sequential; bad input."""

from __future__ import annotations

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.progress import Progress
from napari_tomoml.ptycho.compare import phase_scores
from napari_tomoml.ptycho.iterative import epie_steps


@pytest.mark.parametrize("batch, iterations", [(1, 30), (16, 60)])  # batched: cheaper iterations, more of them
def test_epie_recovers_the_phase(small_scan, batch, iterations):
    s = small_scan
    obj, probe = tm.ptycho.epie(s["clean"], s["positions"], s["probe"], iterations=iterations, batch=batch, shape=(96, 96),
                                device="cpu")
    assert obj.shape == (96, 96) and obj.dtype == np.complex64
    np.testing.assert_array_equal(probe, s["probe"])  # not refined
    scores = phase_scores(np.angle(obj), np.angle(s["obj"]), s["centre"])
    assert scores["mae"] < 0.06, scores
    assert scores["ssim"] > 0.85, scores


def test_epie_refines_a_wrong_probe_from_noisy_data(small_scan):
    s = small_scan
    noisy = tm.ptycho.simulate(s["obj"], s["probe"], s["positions"], photons=1e6, seed=1)
    guess = tm.ptycho.focused_probe(32, defocus=0.7)  # wrong defocus, unit scale
    fixed, _ = tm.ptycho.epie(noisy, s["positions"], guess, iterations=60, rescale_probe=True, device="cpu")
    refined, probe = tm.ptycho.epie(noisy, s["positions"], guess, iterations=60, rescale_probe=True,
                                    update_probe=True, device="cpu")
    truth = np.angle(s["obj"])
    err_fixed = phase_scores(np.angle(fixed), truth, s["centre"])["mae"]
    err_refined = phase_scores(np.angle(refined), truth, s["centre"])["mae"]
    assert err_refined < 0.06 and err_refined < 0.5 * err_fixed, (err_refined, err_fixed)
    # the refined probe's intensity approaches the true one
    tp, gp, rp = (np.abs(p) ** 2 / (np.abs(p) ** 2).sum() for p in (s["probe"], guess, probe))
    assert np.abs(rp - tp).sum() < 0.5 * np.abs(gp - tp).sum()


def test_epie_steps_report_each_iteration_and_stop(small_scan):
    s = small_scan
    steps = epie_steps(s["clean"], s["positions"], s["probe"], iterations=5, device="cpu")
    items = [next(steps) for _ in range(2)]
    assert all(isinstance(p, Progress) for p in items) and items[-1].done == 2 and items[-1].total == 5
    steps.close()  # cancel between iterations


def test_epie_bad_input(small_scan):
    s = small_scan
    with pytest.raises(InputError, match="match one to one"):
        tm.ptycho.epie(s["clean"], s["positions"][:-1], s["probe"], iterations=1)
    with pytest.raises(InputError, match="square"):
        tm.ptycho.epie(s["clean"][:, :, :30], s["positions"], s["probe"], iterations=1)
    bad = s["clean"].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        tm.ptycho.epie(bad, s["positions"], s["probe"], iterations=1)
    with pytest.raises(InputError, match="probe"):
        tm.ptycho.epie(s["clean"], s["positions"], s["probe"][:16, :16], iterations=1)


def test_epie_stops_at_its_own_convergence(small_scan):
    s = small_scan
    changes = [p.data["change"] for p in _all_progress(epie_steps(s["clean"], s["positions"], s["probe"], iterations=200,
                                                                  tol=2e-3, device="cpu"))]
    assert 1 < len(changes) < 200 and changes[-1] < 2e-3 <= changes[-2]
    assert changes[0] > 10 * changes[-1]  # the phase settles: early iterations move it most
    obj, _ = tm.ptycho.epie(s["clean"], s["positions"], s["probe"], iterations=200, tol=2e-3, device="cpu")
    fixed, _ = tm.ptycho.epie(s["clean"], s["positions"], s["probe"], iterations=len(changes), device="cpu")
    np.testing.assert_array_equal(obj, fixed)  # the same run, stopped at the same iteration


def _all_progress(gen):
    out = []
    try:
        while True:
            out.append(next(gen))
    except StopIteration:
        return out
