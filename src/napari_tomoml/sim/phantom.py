"""3-D test objects with known truth: float32 ``(z, y, x)`` volumes of attenuation in ``[0, 1]``.

Three families, so a model can be trained on one and tested on another it has never seen:

- ``"shepp-logan"``: the modified 3-D Shepp–Logan head (deterministic).
- ``"ellipsoids"``: random overlapping ellipsoids of random orientation and density.
- ``"foam"``: a porous rock / foam — grains and pores from a smooth 3-D random field, with a few
  dense mineral inclusions; smooth along z, so adjacent slices look alike (as in a real scan).

Every family is zero outside the cylinder inscribed in the ``(y, x)`` square, so projections of
the volume stay inside a detector of ``n`` pixels at every angle.

>>> vol = make_phantom("foam", 64, 8, seed=0)
>>> vol.shape, vol.dtype
((8, 64, 64), dtype('float32'))
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

# Modified Shepp–Logan ellipsoids (Kak & Slaney, with Toft's higher contrast):
# value, semi-axes (a, b, c) along (x, y, z), centre (x0, y0, z0), rotation about z in degrees.
_SHEPP_LOGAN = [
    (1.0, 0.6900, 0.920, 0.810, 0.0, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.780, 0.0, -0.0184, 0.0, 0.0),
    (-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0, 0.0, -18.0),
    (-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0, 0.0, 18.0),
    (0.1, 0.2100, 0.250, 0.410, 0.0, 0.35, -0.15, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, 0.1, 0.25, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, -0.1, 0.25, 0.0),
    (0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.0, 0.0),
    (0.1, 0.0230, 0.023, 0.020, 0.0, -0.606, 0.0, 0.0),
    (0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.0, 0.0),
]


def _check_size(n: int, nz: int | None) -> int:
    if int(n) != n or n < 4:
        raise InputError(f"phantom size n={n!r} must be an integer of at least 4")
    nz = n if nz is None else nz
    if int(nz) != nz or nz < 1:
        raise InputError(f"phantom depth nz={nz!r} must be a positive integer")
    return int(nz)


def _grid(n: int, nz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised coordinates in [-1, 1] at voxel centres; y points up (row 0 is the top)."""
    xy = (np.arange(n, dtype=np.float32) + 0.5) / (n / 2) - 1
    z = (np.arange(nz, dtype=np.float32) + 0.5) / (nz / 2) - 1
    return z[:, None, None], -xy[None, :, None], xy[None, None, :]


def _cylinder_mask(n: int) -> np.ndarray:
    _, y, x = _grid(n, 1)
    return (x**2 + y**2) <= 1.0


def shepp_logan_3d(n: int, nz: int | None = None) -> np.ndarray:
    """Modified 3-D Shepp–Logan phantom, ``(nz, n, n)`` float32 in ``[0, 1]``.

    ``nz`` defaults to ``n``; the middle slice is the familiar 2-D phantom.

    >>> vol = shepp_logan_3d(64, 5)
    >>> vol.shape, float(vol.max()) <= 1.0
    ((5, 64, 64), True)
    """
    nz = _check_size(n, nz)
    z, y, x = _grid(n, nz)
    vol = np.zeros((nz, n, n), dtype=np.float32)
    for value, a, b, c, x0, y0, z0, phi in _SHEPP_LOGAN:
        cos, sin = np.cos(np.radians(phi)), np.sin(np.radians(phi))
        xr = (x - x0) * cos + (y - y0) * sin
        yr = -(x - x0) * sin + (y - y0) * cos
        inside = (xr / a) ** 2 + (yr / b) ** 2 + ((z - z0) / c) ** 2 <= 1.0
        vol[np.broadcast_to(inside, vol.shape)] += value
    np.clip(vol, 0.0, 1.0, out=vol)
    vol *= _cylinder_mask(n)
    return vol


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def random_ellipsoids(
    n: int,
    nz: int | None = None,
    *,
    seed: int | np.random.Generator | None = None,
    n_ellipsoids: int = 24,
    size_range: tuple[float, float] = (0.04, 0.35),
) -> np.ndarray:
    """Random overlapping ellipsoids (family ``"ellipsoids"``), ``(nz, n, n)`` float32 in ``[0, 1]``.

    A soft body ellipsoid holds ``n_ellipsoids`` inclusions of random orientation, semi-axes
    drawn from ``size_range`` (fractions of the half-width) and densities of either sign.

    >>> vol = random_ellipsoids(64, 16, seed=3)
    >>> vol.shape, float(vol.min()) >= 0.0
    ((16, 64, 64), True)
    """
    nz = _check_size(n, nz)
    rng = np.random.default_rng(seed)
    z, y, x = _grid(n, nz)
    vol = np.zeros((nz, n, n), dtype=np.float32)
    body = (x / 0.85) ** 2 + (y / rng.uniform(0.65, 0.85)) ** 2 <= 1.0
    vol += np.broadcast_to(body * rng.uniform(0.2, 0.4), vol.shape)
    for _ in range(n_ellipsoids):
        axes = rng.uniform(*size_range, size=3)
        centre = rng.uniform(-0.6, 0.6, size=3)
        rot = _random_rotation(rng)
        d = (x - centre[0], y - centre[1], z - centre[2])
        q = sum(((rot[0, k] * d[0] + rot[1, k] * d[1] + rot[2, k] * d[2]) / axes[k]) ** 2 for k in range(3))
        value = rng.choice([-1.0, 1.0], p=[0.3, 0.7]) * rng.uniform(0.1, 0.5)
        vol[np.broadcast_to(q <= 1.0, vol.shape)] += value
    np.clip(vol, 0.0, 1.0, out=vol)
    vol *= _cylinder_mask(n)
    return vol


def _smooth_field(shape: tuple[int, int, int], sigma: tuple[float, float, float], rng) -> np.ndarray:
    """Gaussian-filtered white noise, normalised to zero mean and unit variance."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="reflect")
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def porous_rock(
    n: int,
    nz: int | None = None,
    *,
    seed: int | np.random.Generator | None = None,
    porosity: float = 0.3,
    grain_size: float = 0.04,
    mineral_fraction: float = 0.03,
) -> np.ndarray:
    """Porous rock / foam (family ``"foam"``), ``(nz, n, n)`` float32 in ``[0, 1]``.

    Pores (``porosity`` of the volume, attenuation ~0.05) and matrix (~0.5) come from thresholding
    a smooth 3-D random field whose correlation length is ``grain_size`` (fraction of the width)
    in every direction, so adjacent slices are similar; ``mineral_fraction`` of the volume holds
    dense inclusions (~0.9). The sample is a cylindrical core.

    >>> vol = porous_rock(64, 8, seed=0)
    >>> vol.shape
    (8, 64, 64)
    """
    nz = _check_size(n, nz)
    if not 0.0 <= porosity < 1.0:
        raise InputError(f"porosity={porosity!r} must lie in [0, 1)")
    rng = np.random.default_rng(seed)
    sigma = max(grain_size * n, 0.8)
    field = _smooth_field((nz, n, n), (sigma, sigma, sigma), rng)
    # A soft edge about a voxel wide (the field changes by ~1/sigma per voxel) keeps the pore
    # walls free of staircase aliasing.
    pore_level = np.quantile(field, porosity)
    solid = 1.0 / (1.0 + np.exp(-(field - pore_level) * 2.0 * sigma))
    minerals = _smooth_field((nz, n, n), (sigma / 2, sigma / 2, sigma / 2), rng)
    mineral_level = np.quantile(minerals, 1.0 - mineral_fraction) if mineral_fraction > 0 else np.inf
    dense = 1.0 / (1.0 + np.exp(-(minerals - mineral_level) * sigma))
    vol = 0.05 + 0.45 * solid + 0.4 * dense * solid
    vol = vol.astype(np.float32)
    _, y, x = _grid(n, 1)
    core = (x**2 + y**2) <= 0.92**2
    vol *= core
    return vol


FAMILIES = {
    "shepp-logan": lambda n, nz=None, seed=None: shepp_logan_3d(n, nz),
    "ellipsoids": lambda n, nz=None, seed=None: random_ellipsoids(n, nz, seed=seed),
    "foam": lambda n, nz=None, seed=None: porous_rock(n, nz, seed=seed),
}


def make_phantom(family: str, n: int, nz: int | None = None, *, seed=None) -> np.ndarray:
    """A phantom of a named family (``"shepp-logan"``, ``"ellipsoids"`` or ``"foam"``).

    >>> make_phantom("ellipsoids", 32, 4, seed=1).shape
    (4, 32, 32)
    """
    try:
        make = FAMILIES[family]
    except KeyError:
        raise InputError(f"unknown phantom family {family!r}; choose one of {sorted(FAMILIES)}") from None
    return make(n, nz, seed=seed)
