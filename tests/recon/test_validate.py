"""Input checks of the recon functions: clear InputErrors, never raw torch or NumPy errors."""

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.recon import _validate as v
from napari_tomoml.recon.iterative import solve

THETA = np.linspace(0, np.pi, 10, endpoint=False)
PROJ = np.ones((10, 2, 16), np.float32)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"lr": -1}, "lr must be a finite number > 0"),
        ({"lr": 0}, "lr must be a finite number > 0"),
        ({"tv": "0.1"}, "tv must be a number; got '0.1'"),
        ({"tv": float("nan")}, "tv must be a finite number >= 0; got nan"),
        ({"l1": -0.5}, "l1 must be a finite number >= 0"),
    ],
)
def test_solve_refuses_bad_weights_before_any_torch_work(options, words):
    """Regression: lr=-1 and tv="0.1" raised raw torch errors; tv=nan returned all NaN."""
    with pytest.raises(InputError, match=words):
        solve(PROJ, THETA, device="cpu", n_iter=2, **options)


def test_complex_projections_are_refused_not_silently_made_real():
    """Regression: complex input to fbp dropped the imaginary part with only a warning."""
    with pytest.raises(InputError, match="complex"):
        tm.fbp(PROJ.astype(np.complex64), THETA, device="cpu")


def test_a_volume_larger_than_memory_says_what_it_needs(monkeypatch):
    """Regression: a 13-74 GiB FBP request raised NumPy's bare MemoryError."""
    import psutil

    class Small:
        available = 1 << 20

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Small)
    with pytest.raises(InputError, match=r"needs 0\.\d GiB of memory but 0\.0 GiB are free; reconstruct fewer rows"):
        tm.fbp(np.ones((10, 64, 256), np.float32), THETA, device="cpu")


def test_as_weight_accepts_numpy_numbers():
    assert v.as_weight(np.float32(0.5), "tv") == 0.5 and v.as_weight(0, "tv") == 0.0
