"""``tomoml align IN OUT``: aligned stack plus a shifts table; errors as one line."""

from __future__ import annotations

import numpy as np

from napari_tomoml.cli import main
from napari_tomoml.recon.align import residual_rms
from napari_tomoml.sim.misalign import simulate_misaligned


def test_align_writes_stack_and_table(tmp_path, capsys):
    st = simulate_misaligned(n=32, rows=12, n_angles=60, seed=1)
    src = tmp_path / "mis.npy"
    np.save(src, st.projections)
    out = tmp_path / "aligned.npy"
    assert main(["align", str(src), str(out), "--no-normalize", "--method", "learned", "--device", "cpu", "-q"]) == 0
    table = np.loadtxt(tmp_path / "aligned_shifts.csv", delimiter=",", skiprows=1)  # index, angle_deg, dy, dx
    assert table.shape == (60, 4)
    assert residual_rms(table[:, 2:], st.shifts, st.theta) < 0.1
    assert np.load(out).shape == st.projections.shape
    # refuses to overwrite, and says so in one line
    assert main(["align", str(src), str(out), "--no-normalize", "-q"]) == 2
    assert "exists" in capsys.readouterr().err


def test_align_bad_input(tmp_path, capsys):
    src = tmp_path / "one.npy"
    np.save(src, np.zeros((1, 4, 8), np.float32))
    assert main(["align", str(src), str(tmp_path / "o.npy"), "--no-normalize", "-q"]) == 2
    assert "at least two projections" in capsys.readouterr().err
