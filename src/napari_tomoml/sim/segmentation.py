"""Noisy images of porous / granular materials with exact segmentation masks, for training and tests.

A label map is drawn first (random ellipses in 2-D, ellipsoids in 3-D, one class per object
kind); the image is rendered from it: one grey value per class with a small per-object spread,
a smooth shading field (as beam hardening or uneven illumination leave), a Gaussian blur (the
detector's point spread) and Gaussian noise. The mask is therefore the exact truth of the image.
Families and their classes:

- ``"pores"``: matrix (0) with dark pores (1);
- ``"grains"``: dark background (0) with bright, touching grains (1);
- ``"inclusions"``: matrix (0) with small bright inclusions (1);
- ``"mixed"``: matrix (0), pores (1) and inclusions (2).

Sizes are in pixels, object counts scale with the area, and everything is drawn from
``numpy.random.default_rng(seed)``: the same arguments give the same image.

>>> image, mask = segmentation_image((128, 128), "mixed", seed=0)
>>> image.shape, image.dtype, sorted(np.unique(mask).tolist())
((128, 128), dtype('float32'), [0, 1, 2])
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

# per object kind: class label, grey value, radius range (px), area fraction aimed at
_KINDS = {
    "pore": (1, 0.15, (5.0, 22.0), 0.15),
    "inclusion": (2, 0.85, (3.5, 9.0), 0.05),
    "grain": (1, 0.70, (10.0, 36.0), 0.45),
}
FAMILIES = {
    "pores": {"background": 0.5, "kinds": {"pore": 1}, "classes": ["matrix", "pore"]},
    "grains": {"background": 0.25, "kinds": {"grain": 1}, "classes": ["background", "grain"]},
    "inclusions": {"background": 0.5, "kinds": {"inclusion": 1}, "classes": ["matrix", "inclusion"]},
    "mixed": {"background": 0.5, "kinds": {"pore": 1, "inclusion": 2}, "classes": ["matrix", "pore", "inclusion"]},
}


def class_names(family: str) -> list[str]:
    """Class names of a family, in label order.

    >>> class_names("mixed")
    ['matrix', 'pore', 'inclusion']
    """
    return list(_family(family)["classes"])


def _family(family: str) -> dict:
    if family not in FAMILIES:
        raise InputError(f"unknown segmentation family {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def _draw(labels: np.ndarray, values: np.ndarray, rng: np.random.Generator, label: int, grey: float,
          radii: tuple[float, float], fraction: float) -> None:
    """Random ellipses/ellipsoids of one kind painted into ``labels`` and ``values`` in place."""
    ndim = labels.ndim
    mean_r = 0.5 * (radii[0] + radii[1])
    unit = np.pi * mean_r**2 if ndim == 2 else 4 / 3 * np.pi * mean_r**3
    count = int(round(fraction * labels.size / unit))
    for _ in range(count):
        centre = rng.uniform(0, labels.shape)
        axes = rng.uniform(*radii) * rng.uniform(0.6, 1.0, ndim)
        angle = rng.uniform(0, np.pi)
        reach = int(np.ceil(axes.max()))
        lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
        hi = np.minimum(np.floor(centre).astype(int) + reach + 1, labels.shape)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        d = [g + 0.5 - c for g, c in zip(grids, centre)]  # pixel centres
        # rotation in the (y, x) plane; z (3-D) stays an axis
        u = np.cos(angle) * d[-1] + np.sin(angle) * d[-2]
        v = -np.sin(angle) * d[-1] + np.cos(angle) * d[-2]
        inside = (u / axes[-1]) ** 2 + (v / axes[-2]) ** 2
        if ndim == 3:
            inside = inside + (d[0] / axes[0]) ** 2
        inside = inside <= 1.0
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        labels[box][inside] = label
        values[box][inside] = grey + rng.normal(0, 0.03)


def segmentation_image(
    shape: tuple[int, ...] = (1024, 1024),
    family: str = "mixed",
    *,
    noise: float = 0.2,
    blur: float = 0.8,
    shading: float = 0.12,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image (2-D) or volume (3-D) and its exact integer mask (uint8, classes of the family).

    ``noise`` is the standard deviation of the additive Gaussian noise (grey values are in about
    0..1: pores 0.15, matrix 0.5, inclusions 0.85), ``blur`` the point-spread sigma in pixels (in
    the slice plane) and ``shading`` the amplitude of the smooth intensity drift.

    >>> a, _ = segmentation_image((64, 64), "pores", seed=3)
    >>> b, _ = segmentation_image((64, 64), "pores", seed=3)
    >>> bool(np.array_equal(a, b))
    True
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(f"shape must be (y, x) or (z, y, x) with positive sides, got {shape}")
    spec = _family(family)
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    values = np.full(shape, spec["background"], np.float32)
    for kind, label in spec["kinds"].items():
        _, grey, radii, fraction = _KINDS[kind]
        _draw(labels, values, rng, label, grey, radii, fraction)
    image = values
    if shading > 0:
        field = np.zeros(shape[-2:], np.float32)
        yy, xx = np.ogrid[: shape[-2], : shape[-1]]
        for _ in range(3):
            k = rng.uniform(0.5, 2.0, 2) * 2 * np.pi / np.array(shape[-2:])
            field += np.cos(k[0] * yy + k[1] * xx + rng.uniform(0, 2 * np.pi)).astype(np.float32)
        image = image + (shading / 3) * field
    if blur > 0:
        sigma = (blur, blur) if len(shape) == 2 else (0, blur, blur)
        image = ndimage.gaussian_filter(image, sigma)
    if noise > 0:
        image = image + noise * rng.standard_normal(shape, dtype=np.float32)
    return image.astype(np.float32), labels


def annotation_strokes(mask: np.ndarray, fraction: float = 0.04, *, width: int = 3, seed: int = 0) -> np.ndarray:
    """Sparse annotation as a person paints it in a napari Labels layer: short strokes inside
    each class's regions (kept a pixel away from boundaries), labels ``class + 1``, 0 elsewhere.

    Every class present gets an equal share of ``fraction`` of the pixels (less if it is too small).
    Works on a 2-D mask or slice by slice on a 3-D one.

    >>> _, mask = segmentation_image((128, 128), "pores", seed=0)
    >>> strokes = annotation_strokes(mask, 0.05, seed=0)
    >>> sorted(np.unique(strokes).tolist()), bool((strokes > 0).mean() <= 0.05)
    ([0, 1, 2], True)
    >>> bool(np.all(mask[strokes > 0] + 1 == strokes[strokes > 0]))
    True
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        return np.stack([annotation_strokes(m, fraction, width=width, seed=seed + i) for i, m in enumerate(mask)])
    if mask.ndim != 2:
        raise InputError(f"mask must be 2-D or 3-D, got shape {mask.shape}")
    rng = np.random.default_rng(seed)
    out = np.zeros(mask.shape, np.uint8)
    classes = [int(c) for c in np.unique(mask)]
    budget = fraction * mask.size / max(len(classes), 1)
    footprint = np.ones((width, width), bool)
    for c in classes:
        region = ndimage.binary_erosion(mask == c, iterations=1)  # strokes never touch a boundary
        inner = ndimage.binary_erosion(region, structure=footprint)  # where a stroke's centre may go
        coords = np.argwhere(inner)
        if len(coords) == 0:
            continue
        line = np.zeros(mask.shape, bool)
        painted = 0
        for _ in range(100_000):
            if painted >= min(budget, 0.5 * region.sum()):
                break
            y, x = coords[rng.integers(len(coords))]
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(10, 60)
            t = np.arange(int(length))
            ys = np.round(y + t * np.sin(angle)).astype(int)
            xs = np.round(x + t * np.cos(angle)).astype(int)
            ok = (ys >= 0) & (ys < mask.shape[0]) & (xs >= 0) & (xs < mask.shape[1])
            ys, xs = ys[ok], xs[ok]
            stay = inner[ys, xs]
            n = int(np.argmin(stay)) if not stay.all() else len(stay)  # stop where the stroke leaves
            n = min(n, int((budget - painted) / (width + 1)) + 1)
            new = ~line[ys[:n], xs[:n]]
            line[ys[:n], xs[:n]] = True
            painted += (width + 1) * int(new.sum())
        out[ndimage.binary_dilation(line, structure=footprint) & region] = c + 1
    return out
