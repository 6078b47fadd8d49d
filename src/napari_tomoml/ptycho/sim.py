"""Ptychography simulation: complex objects, a focused probe, raster/spiral scans, far-field data.

Conventions used by the whole :mod:`napari_tomoml.ptycho` package:

- An object is a complex (Y, X) array ``amplitude * exp(1j * phase)``.
- A probe is a complex (n, n) array; the window it illuminates is n x n object pixels.
- ``positions`` are (N, 2) pixel coordinates (y, x) of the probe centre in the object, rounded to
  the nearest pixel: the window of position ``p`` is ``obj[py - n//2 : py - n//2 + n, ...]``.
- A diffraction pattern is ``|fftshift(fft2(probe * window, norm="ortho"))|**2`` in photons, the
  zero frequency in the middle (pixel n//2), so the total counts equal ``sum(|probe * window|**2)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


# ---------------------------------------------------------------------------- objects
def object_from_image(image: np.ndarray, *, max_phase: float = 1.5, absorption: float = 0.3) -> np.ndarray:
    """A complex object whose thickness follows ``image`` (a homogeneous material).

    The image is scaled to a thickness ``t`` in [0, 1]; phase ``max_phase * t`` (radians) and
    amplitude ``exp(-absorption * t)``, as for one material of varying thickness.

    >>> o = object_from_image(np.eye(4))
    >>> round(float(np.angle(o).max()), 2), round(float(np.abs(o).min()), 3)
    (1.5, 0.741)
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 2:
        raise InputError(f"an object image must be 2-D (Y, X), got shape {image.shape}")
    if not np.isfinite(image).all():
        raise InputError("the object image contains NaN or infinite values")
    span = image.max() - image.min()
    return _from_thickness((image - image.min()) / span if span > 0 else np.zeros_like(image), max_phase, absorption)


def _from_thickness(t: np.ndarray, max_phase: float, absorption: float) -> np.ndarray:
    return (np.exp(-absorption * t) * np.exp(1j * max_phase * t)).astype(np.complex64)


def random_object(
    shape: tuple[int, int], *, seed: int = 0, features: int | None = None, max_phase: float = 1.5,
    absorption: float = 0.3, smooth: float = 0.8,
) -> np.ndarray:
    """A complex object of randomly etched features (rectangles, lines, discs) like lithographic test samples.

    >>> o = random_object((64, 64), seed=1)
    >>> o.shape, o.dtype, bool(np.angle(o).max() > 0.5)
    ((64, 64), dtype('complex64'), True)
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 8 or w < 8:
        raise InputError(f"object shape {shape} is too small: at least 8 x 8 pixels")
    rng = np.random.default_rng(seed)
    n = features if features is not None else max(4, h * w // 200)
    t = np.zeros((h, w))
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        depth = rng.uniform(0.3, 1.0)
        kind = rng.integers(3)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if kind == 0:  # rectangle
            hy, hx = rng.uniform(1, 8, size=2)
            mask = (np.abs(yy - cy) < hy) & (np.abs(xx - cx) < hx)
        elif kind == 1:  # line at a random angle
            angle, half_len, half_width = rng.uniform(0, np.pi), rng.uniform(5, 20), rng.uniform(0.6, 2)
            u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
            v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
            mask = (np.abs(u) < half_len) & (np.abs(v) < half_width)
        else:  # disc
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(1.5, 7) ** 2
        t = np.maximum(t, depth * mask)
    if smooth > 0:
        t = ndimage.gaussian_filter(t, smooth)
    return _from_thickness(t, max_phase, absorption)


# ---------------------------------------------------------------------------- probe
def focused_probe(size: int = 64, *, aperture: float = 0.2, defocus: float = 1.0, photons: float | None = None) -> np.ndarray:
    """A probe focused by a circular lens, seen slightly out of focus.

    ``aperture`` is the lens pupil radius as a fraction of the (size x size) frequency grid, so
    the diffraction pattern is a bright disc of that radius and the focal spot is about
    ``0.6 / aperture`` pixels across; ``defocus`` is the defocus in waves at the pupil edge
    (it widens the spot into a ring-like one, which helps ptychography). With ``photons`` the
    probe is scaled so that ``sum(|probe|**2) == photons``.

    >>> p = focused_probe(32, photons=1e4)
    >>> p.shape, round(float((np.abs(p) ** 2).sum()))
    ((32, 32), 10000)
    """
    size = int(size)
    if size < 8:
        raise InputError(f"probe size {size} is too small: at least 8 pixels")
    f = np.fft.fftshift(np.fft.fftfreq(size))
    fy, fx = np.meshgrid(f, f, indexing="ij")
    rho = np.sqrt(fy**2 + fx**2) / aperture
    pupil = (rho <= 1.0) * np.exp(2j * np.pi * defocus * rho**2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    norm = np.sqrt((np.abs(probe) ** 2).sum())
    probe = probe / norm * (np.sqrt(photons) if photons is not None else 1.0)
    return probe.astype(np.complex64)


def probe_diameter(probe: np.ndarray, energy: float = 0.9) -> float:
    """Diameter (pixels) of the centred disc holding ``energy`` of the probe's intensity.

    >>> 8 < probe_diameter(focused_probe(64)) < 40
    True
    """
    intensity = np.abs(np.asarray(probe)) ** 2
    n = intensity.shape[0]
    cy, cx = ndimage.center_of_mass(intensity)
    yy, xx = np.mgrid[:n, : intensity.shape[1]]
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2).ravel()
    order = np.argsort(r)
    cumulative = np.cumsum(intensity.ravel()[order]) / intensity.sum()
    return float(2 * r[order][np.searchsorted(cumulative, energy)])


# ---------------------------------------------------------------------------- scans
def _step(diameter: float, overlap: float) -> float:
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1), got {overlap}")
    if diameter <= 0:
        raise InputError(f"probe diameter must be positive, got {diameter}")
    return diameter * (1.0 - overlap)


def raster_scan(shape: tuple[int, int], window: int, diameter: float, *, overlap: float = 0.6) -> np.ndarray:
    """Probe centres (N, 2) on a raster of lines, spaced ``diameter * (1 - overlap)``, inside ``shape``.

    Every window (``window`` pixels wide) stays inside the object. Line by line, as a raster
    scan is recorded (the published data's (lines, points) order).

    >>> raster_scan((64, 64), 32, 16, overlap=0.5)[:3].tolist()
    [[16.0, 16.0], [16.0, 24.0], [16.0, 32.0]]
    """
    step = _step(diameter, overlap)
    half = window // 2
    ys = np.arange(half, shape[0] - (window - half) + 1e-9, step)
    xs = np.arange(half, shape[1] - (window - half) + 1e-9, step)
    if len(ys) == 0 or len(xs) == 0:
        raise InputError(f"a {window}-pixel window does not fit in an object of shape {tuple(shape)}")
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def spiral_scan(shape: tuple[int, int], window: int, diameter: float, *, overlap: float = 0.6) -> np.ndarray:
    """Probe centres (N, 2) on a Fermat spiral from the object's middle, mean spacing ``diameter * (1 - overlap)``.

    Each point covers the area of a raster cell of the same step (``c = step / sqrt(pi)``);
    points whose window would leave the object are skipped.

    >>> pts = spiral_scan((96, 96), 32, 16, overlap=0.5)
    >>> len(pts) > 20, bool(pts.min() >= 16), bool(pts.max() <= 80)
    (True, True, True)
    """
    step = _step(diameter, overlap)
    half = window // 2
    lo = np.array([half, half], float)
    hi = np.array([shape[0] - (window - half), shape[1] - (window - half)], float)
    if np.any(hi < lo):
        raise InputError(f"a {window}-pixel window does not fit in an object of shape {tuple(shape)}")
    centre = (lo + hi) / 2
    c = step / np.sqrt(np.pi)
    r_max = np.hypot(*(hi - lo)) / 2
    k = np.arange(int((r_max / c) ** 2) + 1)
    r, theta = c * np.sqrt(k), k * GOLDEN_ANGLE
    pts = centre + np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    inside = np.all((pts >= lo - 1e-9) & (pts <= hi + 1e-9), axis=1)
    return pts[inside]


# ---------------------------------------------------------------------------- checks shared by the package
def check_positions(positions: np.ndarray, n: int | None = None, what: str = "positions") -> np.ndarray:
    """(N, 2) finite float positions; ``n`` is the number of patterns they must match."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise InputError(f"{what} must be an (N, 2) array of (y, x) pixel coordinates, got shape {pos.shape}")
    if not np.isfinite(pos).all():
        raise InputError(f"{what} contain NaN or infinite values")
    if n is not None and len(pos) != n:
        raise InputError(f"there are {n} diffraction patterns but {len(pos)} {what}: they must match one to one")
    return pos


def check_patterns(patterns: np.ndarray, what: str = "diffraction patterns") -> np.ndarray:
    """(N, H, H) finite, non-negative float32 patterns (a single (H, H) frame becomes N = 1)."""
    arr = np.asarray(patterns)
    if np.iscomplexobj(arr):
        raise InputError(f"{what} must be real intensities, not complex")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"{what} must be (N, H, W) frames, got shape {arr.shape}")
    if arr.shape[1] != arr.shape[2]:
        raise InputError(f"{what} must be square frames, got {arr.shape[1]} x {arr.shape[2]}")
    if len(arr) == 0:
        raise InputError(f"no {what} given")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contain NaN or infinite values")
    return arr


def windows(positions: np.ndarray, n: int) -> np.ndarray:
    """Top-left corners (N, 2) int of the n x n windows centred at ``positions``."""
    return np.rint(positions).astype(np.int64) - n // 2


# ---------------------------------------------------------------------------- detector
def detector_reduce(patterns: np.ndarray, detector: int | tuple[int, int] | None) -> np.ndarray:
    """Centre-crop and bin detector frames: ``detector`` = crop size, or (crop size, bin factor).

    Binning sums blocks (counts are kept), e.g. 516² → crop 128² → bin 2 → 64².

    >>> detector_reduce(np.ones((1, 516, 516)), (128, 2)).shape
    (1, 64, 64)
    """
    if detector is None:
        return patterns
    crop, binning = (detector, 1) if np.isscalar(detector) else tuple(detector)
    crop, binning = int(crop), int(binning)
    h, w = patterns.shape[-2:]
    if crop > min(h, w) or crop < 1:
        raise InputError(f"detector crop {crop} does not fit frames of {h} x {w}")
    if binning < 1 or crop % binning:
        raise InputError(f"detector bin {binning} must divide the crop size {crop}")
    y0, x0 = h // 2 - crop // 2, w // 2 - crop // 2  # keeps the zero frequency at pixel crop//2
    out = patterns[..., y0 : y0 + crop, x0 : x0 + crop]
    if binning > 1:
        m = crop // binning
        out = out.reshape(*out.shape[:-2], m, binning, m, binning).sum(axis=(-3, -1))
    return out


# ---------------------------------------------------------------------------- forward model
def exit_waves(obj: np.ndarray, probe: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """probe x object window at each position, (N, n, n) complex."""
    n = probe.shape[0]
    corners = windows(positions, n)
    idx = np.arange(n)
    return probe[None] * obj[(corners[:, 0, None] + idx)[:, :, None], (corners[:, 1, None] + idx)[:, None, :]]


def simulate(
    obj: np.ndarray,
    probe: np.ndarray,
    positions: np.ndarray,
    *,
    photons: float | None = 1e6,
    detector: int | tuple[int, int] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Far-field diffraction patterns (N, H, W) float32 of ``obj`` scanned by ``probe`` at ``positions``.

    ``photons``: the probe is scaled to carry this many photons per position (Poisson noise is
    then drawn); ``None`` uses the probe as given (in sqrt(photons)) and returns the noiseless
    intensities. ``detector``: crop size or (crop, bin), see :func:`detector_reduce`.

    >>> import napari_tomoml as tm
    >>> obj = tm.ptycho.random_object((96, 96), seed=0)
    >>> probe = tm.ptycho.focused_probe(32)
    >>> pos = tm.ptycho.raster_scan(obj.shape, 32, tm.ptycho.probe_diameter(probe), overlap=0.6)
    >>> pat = tm.ptycho.simulate(obj, probe, pos, photons=1e5)
    >>> pat.shape[1:], pat.dtype, 0.5e5 < float(pat[0].sum()) < 1.01e5
    ((32, 32), dtype('float32'), True)
    """
    obj = np.asarray(obj)
    probe = np.asarray(probe)
    if obj.ndim != 2:
        raise InputError(f"the object must be a 2-D complex array (Y, X), got shape {obj.shape}")
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise InputError(f"the probe must be a square 2-D complex array, got shape {probe.shape}")
    if not (np.isfinite(obj).all() and np.isfinite(probe).all()):
        raise InputError("the object or probe contains NaN or infinite values")
    pos = check_positions(positions)
    n = probe.shape[0]
    corners = windows(pos, n)
    if len(pos) == 0:
        raise InputError("no scan positions given")
    if corners.min() < 0 or np.any(corners + n > np.array(obj.shape)):
        raise InputError(
            f"some {n}-pixel probe windows leave the object {obj.shape}: centres must lie in "
            f"[{n // 2}, size - {n - n // 2}] (use raster_scan/spiral_scan to make positions)"
        )
    if photons is not None:
        if not photons > 0:
            raise InputError(f"photons must be positive, got {photons}")
        probe = probe * np.sqrt(photons / (np.abs(probe) ** 2).sum())
    psi = exit_waves(obj.astype(np.complex128), probe.astype(np.complex128), pos)
    intensity = np.abs(np.fft.fftshift(np.fft.fft2(psi, norm="ortho"), axes=(-2, -1))) ** 2
    if photons is not None:
        intensity = np.random.default_rng(seed).poisson(intensity).astype(np.float64)
    return detector_reduce(intensity, detector).astype(np.float32)


def patches(obj: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """The object's n x n windows at ``positions``, (N, n, n): the training labels of PtychoNN.

    >>> patches(np.arange(16.0).reshape(4, 4), np.array([[2.0, 2.0]]), 2)[0].tolist()
    [[5.0, 6.0], [9.0, 10.0]]
    """
    corners = windows(check_positions(positions), n)
    idx = np.arange(n)
    return np.asarray(obj)[(corners[:, 0, None] + idx)[:, :, None], (corners[:, 1, None] + idx)[:, None, :]]
