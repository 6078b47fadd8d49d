"""A small ptychography scan shared by the ptycho tests: 96² object, 32² probe, raster at 70 % overlap."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml.ptycho import sim


@pytest.fixture(scope="session")
def small_scan():
    obj = sim.random_object((96, 96), seed=0)
    probe = sim.focused_probe(32, photons=1e6)
    pos = sim.raster_scan(obj.shape, 32, sim.probe_diameter(probe), overlap=0.7)
    clean = sim.simulate(obj, probe, pos, photons=None)
    return {"obj": obj, "probe": probe, "positions": pos, "clean": clean, "centre": (slice(30, 66), slice(30, 66))}
