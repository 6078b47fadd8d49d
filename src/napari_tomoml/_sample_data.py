"""napari sample data: a simulated scan, generated on the spot (nothing is downloaded).

A 3-D Shepp–Logan phantom is projected over 180 angles in [0, π) and turned into measured
projections at a normal and at a low X-ray dose (Poisson counts → −log line integrals), the pair
TomoGAN-style denoising learns from. The three layers (phantom, normal-dose projections,
low-dose projections) carry ``theta`` (radians) in ``layer.metadata`` so the Reconstruct and
Denoise widgets can use them directly. Generation takes a few seconds once per process.
No Qt here.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

SIZE = 128  # phantom width and height (pixels)
SLICES = 32  # phantom height (z slices) = detector rows
N_ANGLES = 180
MAX_LINE_INTEGRAL = 2.0  # attenuation scaled so the thickest path transmits e^-2 ≈ 14 %
NORMAL_DOSE = 1e4  # incident photons per detector pixel
LOW_DOSE = 2e2
SEED = 0


@lru_cache(maxsize=4)
def _simulate(size: int, slices: int, n_angles: int) -> dict[str, Any]:
    from .recon import project
    from .sim.dose import simulate_counts
    from .sim.phantom import shepp_logan_3d

    theta = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    phantom = np.asarray(shepp_logan_3d(size, slices), dtype=np.float32)
    center = size / 2.0  # the projector's own default, written out so the metadata can carry it
    clean = np.asarray(project(phantom, theta, center=center, device="cpu"), dtype=np.float32)
    peak = float(clean.max())
    scale = MAX_LINE_INTEGRAL / peak if peak > 0 else 1.0
    phantom *= scale  # attenuation per pixel, so FBP of the projections gives these values
    clean *= scale
    rng = np.random.default_rng(SEED)
    out = {"theta": theta, "phantom": phantom, "clean": clean}
    for key, i0 in (("normal", NORMAL_DOSE), ("low", LOW_DOSE)):
        out[key] = np.asarray(simulate_counts(clean, i0, rng), dtype=np.float32)  # noisy −log
    out["center"] = center
    return out


def phantom_scan(size: int = SIZE, slices: int = SLICES, n_angles: int = N_ANGLES) -> dict[str, Any]:
    """The simulated arrays (copies): theta, phantom (z, y, x), clean/normal/low projections."""
    sim = _simulate(int(size), int(slices), int(n_angles))
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in sim.items()}


def make_phantom_scan(size: int = SIZE, slices: int = SLICES, n_angles: int = N_ANGLES) -> list[tuple]:
    """npe2 sample data: phantom volume, normal-dose and low-dose projections (layer data tuples)."""
    sim = phantom_scan(size, slices, n_angles)
    theta = sim["theta"]
    common = {
        "source": "napari-tomoml simulated Shepp-Logan phantom",
        "theta": theta,
        "center": sim["center"],
        "kind": "projections",
        "normalized": True,
        "n_flats": 0,
        "n_darks": 0,
    }
    hi = float(MAX_LINE_INTEGRAL) * 1.1
    layers = [
        (
            sim["phantom"],
            {
                "name": "phantom (ground truth)",
                "colormap": "gray",
                "axis_labels": ("z", "y", "x"),
                "contrast_limits": (0.0, float(sim["phantom"].max()) or 1.0),
                "metadata": {
                    "kind": "volume",
                    "source": common["source"],
                    "units": "attenuation per pixel",
                },
            },
            "image",
        ),
        (
            sim["normal"],
            {
                "name": "projections (normal dose)",
                "colormap": "gray",
                "axis_labels": ("angle", "row", "col"),
                "contrast_limits": (0.0, hi),
                "metadata": {**common, "dose_i0": NORMAL_DOSE},
            },
            "image",
        ),
        (
            sim["low"],
            {
                "name": "projections (low dose)",
                "colormap": "gray",
                "axis_labels": ("angle", "row", "col"),
                "contrast_limits": (0.0, hi),
                "metadata": {**common, "dose_i0": LOW_DOSE},
                "visible": False,
            },
            "image",
        ),
    ]
    return layers
