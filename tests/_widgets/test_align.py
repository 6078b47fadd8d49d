"""Align widget: projections layer → shifts plotted → aligned layer and a before/after row."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import dock, wait_done

pytestmark = pytest.mark.napari


def test_align_and_apply(make_napari_viewer, qtbot, notifications):
    from napari_tomoml.recon.align import residual_rms
    from napari_tomoml.sim.misalign import simulate_misaligned

    st = simulate_misaligned(n=32, rows=8, n_angles=40, sigma_x=2, seed=0)
    viewer = make_napari_viewer()
    viewer.add_image(st.projections, name="mis", metadata={"kind": "projections", "theta": st.theta.tolist()})
    widget = dock(viewer, "Align projections")
    widget.layer_combo.set_layer("mis")
    widget.method_combo.setCurrentText("learned")
    widget.device_combo.setCurrentText("cpu")
    assert widget.center_spin.value() == st.projections.shape[-1] / 2
    widget.align_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    assert residual_rms(widget.shifts, st.shifts, st.theta) < 0.2
    x, y = widget.dx_curve.getData()
    np.testing.assert_allclose(y, widget.shifts[:, 1])
    assert widget.apply_button.isEnabled()
    widget.apply_button.click()
    assert wait_done(qtbot, widget.runner) == "ok", notifications
    out = viewer.layers["mis aligned"]
    assert out.data.shape == st.projections.shape
    assert out.metadata["task"] == "align" and out.metadata["method"] == "learned"
    assert len(out.metadata["shifts_dy_dx"]) == 40
    pair = viewer.layers["row 4: before | after"].data
    assert pair.shape[1] == 2 * st.projections.shape[-1] + 4
