import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError
from napari_tomoml.recon import fbp, project, remove_stripes
from napari_tomoml.sim.dose import add_stripes, simulate_counts
from napari_tomoml.sim.phantom import porous_rock, shepp_logan_3d


@pytest.mark.parametrize("make", [lambda: porous_rock(128, 2, seed=0), lambda: shepp_logan_3d(128, 2)])
def test_most_ring_energy_is_removed_and_the_object_kept(make):
    vol = make()
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    proj = simulate_counts(project(vol, theta, device="cpu") * 0.05, 1e4, rng=0) / 0.05
    striped = add_stripes(proj, fraction=0.1, strength=0.02, seed=1)
    clean = fbp(proj, theta, device="cpu")
    rings = np.sum((fbp(striped, theta, device="cpu") - clean) ** 2)
    left = np.sum((fbp(remove_stripes(striped), theta, device="cpu") - clean) ** 2)
    damage = np.sum((fbp(remove_stripes(proj), theta, device="cpu") - clean) ** 2)
    assert left < 0.3 * rings
    assert damage < 0.2 * rings


def test_shapes_and_kinds_are_kept():
    sino = np.random.default_rng(0).random((40, 32)).astype(np.float32)
    assert remove_stripes(sino).shape == (40, 32)
    out = remove_stripes(torch.from_numpy(sino[:, None, :]))
    assert isinstance(out, torch.Tensor) and out.shape == (40, 1, 32)


def test_bad_arguments():
    with pytest.raises(InputError, match="method"):
        remove_stripes(np.zeros((10, 10)), method="fw")
    with pytest.raises(InputError, match="size"):
        remove_stripes(np.zeros((10, 10)), size=1)
