"""The Scan container: validation and summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.io import Scan


def test_scan_normalises_theta_and_single_reference_frames():
    scan = Scan(np.zeros((3, 2, 4)), [0, 1, 2], flats=np.ones((2, 4)), darks=np.zeros((1, 2, 4)))
    assert scan.theta.dtype == np.float32 and scan.theta.shape == (3,)
    assert scan.flats.shape == (1, 2, 4)
    assert scan.shape == (3, 2, 4) and not scan.lazy
    assert scan.metadata["notes"] == []


def test_summary_names_shape_angles_and_references(small_scan):
    small_scan.metadata.update(source="/data/x.h5", format="dxchange")
    text = small_scan.summary()
    assert "x.h5 (dxchange)" in text
    assert "12 x 6 x 8" in text and "uint16" in text and "in memory" in text
    assert "0.0° .. 165.0°" in text
    assert "flats: 2, darks: 2" in text and "3.5" in text
    d = small_scan.summary_dict()
    json.dumps(d)  # JSON-friendly for layer metadata
    assert d["n_flats"] == 2 and d["angle_max_deg"] == 165.0 and d["lazy"] is False


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(projections=np.zeros((2, 3)), theta=[0, 1]), "3-D"),
        (dict(projections=np.zeros((3, 2, 2)), theta=[0, 1]), "2 angles for 3 projections"),
        (dict(projections=np.zeros((2, 2, 2)), theta=[0, np.nan]), "NaN"),
        (dict(projections=np.zeros((2, 2, 2)), theta=[0, 1], flats=np.ones((1, 3, 2))), "flats have shape"),
        (dict(projections=np.zeros((2, 2, 2)), theta=[0, 1], darks=np.ones((1, 2, 3))), "darks have shape"),
        (dict(projections=np.array([[["a"]]]), theta=[0]), "numeric"),
    ],
)
def test_invalid_scans_raise_input_error_naming_the_source(kwargs, words):
    with pytest.raises(InputError, match=words) as info:
        Scan(**kwargs, metadata={"source": "/data/scan_17.h5"})
    assert "scan_17.h5" in str(info.value)
