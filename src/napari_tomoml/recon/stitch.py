"""360° scans with an off-centre rotation axis, stitched into 180° scans of a wider detector.

With the axis near one edge of the detector ("half-acquisition"), each projection sees a little
more than half the object; the projection half a turn later sees the other half, mirrored
about the axis: ``p(θ + π, u) = p(θ, 2c − u)``. Joining each projection of the first half-turn
with the mirrored one of the second gives a 180° scan on a detector of about ``2c`` pixels,
the axis at its middle, which any 180° reconstructor handles.

>>> import numpy as np
>>> theta = np.linspace(0, 2 * np.pi, 8, endpoint=False)
>>> proj180, theta180, center180 = stitch_360(np.ones((8, 1, 10), np.float32), theta, center=8.0)
>>> proj180.shape, len(theta180), center180
((4, 1, 16), 4, 8.0)
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def stitch_360(projections, theta, center: float):
    """A 360° scan ``(angles, rows, cols)`` with axis at ``center`` (px from the left edge) → 180°.

    Returns ``(projections, theta, center)`` of the stitched scan: the first half-turn's angles,
    ``2·max(center, cols − center)`` detector pixels (rounded up), the axis at the middle. Each
    angle ``θ`` is paired with the measured angle nearest ``θ + π``; the mirrored projection is
    resampled with linear interpolation, and the overlap of the two halves is blended linearly
    so no seam shows.
    """
    proj = np.asarray(projections, dtype=np.float32)
    if proj.ndim == 2:
        proj = proj[:, None, :]
    if proj.ndim != 3:
        raise InputError(f"projections must be (angles, rows, cols); got shape {np.shape(projections)}")
    theta = np.asarray(theta, dtype=np.float64)
    n_angles, _, n = proj.shape
    if theta.shape != (n_angles,):
        raise InputError(f"theta has {theta.size} angles for {n_angles} projections")
    span = float(np.ptp(theta)) + (float(np.median(np.diff(np.sort(theta)))) if n_angles > 1 else 0.0)
    if span < 2 * np.pi - 1e-3:
        raise InputError(
            f"a 360° stitch needs angles over a full turn; these span {math.degrees(span):.1f}°"
        )
    if not 0 < center < n:
        raise InputError(f"center={center:.2f} lies outside the detector (0 to {n} px)")
    flip = center < n / 2  # axis near the left edge: mirror the detector, stitch, mirror back
    if flip:
        proj, center = proj[..., ::-1], n - center
    width = int(math.ceil(2 * center))
    order = np.argsort(theta)
    theta_sorted = theta[order]
    first = order[theta_sorted < theta_sorted[0] + np.pi - 1e-9]
    u = np.arange(width) + 0.5  # stitched detector pixel centres, axis at ``center``
    # the directly measured part covers u < n; the mirrored part covers u > 2c − n
    lo, hi = 2 * center - n, float(n)
    w_direct = np.clip((hi - u) / max(hi - lo, 1e-6), 0, 1) if hi > lo else (u < n).astype(float)
    w_direct = np.where(u < lo, 1.0, np.where(u >= hi, 0.0, w_direct))
    src = 2 * center - u  # mirrored position on the measured detector
    out = np.empty((len(first), proj.shape[1], width), np.float32)
    cols = np.arange(n) + 0.5
    for k, i in enumerate(first):
        target = theta[i] + np.pi
        j = int(np.argmin(np.abs(np.angle(np.exp(1j * (theta - target))))))
        direct = np.zeros((proj.shape[1], width), np.float32)
        direct[:, : min(n, width)] = proj[i, :, : min(n, width)]
        mirrored = np.stack([np.interp(src, cols, row, left=0.0, right=0.0) for row in proj[j]])
        out[k] = w_direct * direct + (1 - w_direct) * mirrored
    if flip:
        out = out[..., ::-1]
    return np.ascontiguousarray(out), theta[first], width / 2.0
