"""Simulated scans with known truth: phantoms, dose (photon noise), sparse views, stripes."""

from .dose import add_stripes, simulate_counts, sparse_angles
from .phantom import FAMILIES, make_phantom, porous_rock, random_ellipsoids, shepp_logan_3d

__all__ = [
    "FAMILIES",
    "make_phantom",
    "shepp_logan_3d",
    "random_ellipsoids",
    "porous_rock",
    "simulate_counts",
    "sparse_angles",
    "add_stripes",
]
