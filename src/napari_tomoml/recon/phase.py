"""Single-distance phase retrieval (Paganin) for propagation-based phase-contrast scans.

Paganin et al. (J. Microsc. 206, 33, 2002), eq. (8): for a homogeneous object of known
``δ/β`` at distance ``z`` from the detector,

    μ T(r) = −ln( F⁻¹[ F[I/I₀] / (1 + z δ/μ |k|²) ] ),   μ = 4πβ/λ,  δ/μ = (δ/β) λ/(4π),

with ``k`` the angular spatial frequency. The result is returned as line integrals ``μ T`` (the
−log of the filtered intensity, as tomopy's ``retrieve_phase`` followed by ``minus_log``), ready
for FBP; divide by ``μ`` for a thickness.

>>> import numpy as np
>>> flat = np.ones((2, 16, 16), np.float32)     # flat-field-corrected intensities, no object
>>> float(np.abs(retrieve_phase(flat, pixel_size_um=1, distance_mm=50, energy_kev=20, delta_beta=100)).max()) < 1e-5
True
"""

from __future__ import annotations

import math
from collections.abc import Generator

import numpy as np
import torch

from ..device import resolve_device
from ..errors import InputError
from ..progress import Progress, ProgressArg, run_to_end

METHODS = ("paganin",)
# hc in keV·m: λ = HC_KEV_M / E
HC_KEV_M = 1.23984198e-9
_BLOCK_BYTES = 256 * 2**20  # padded complex frames per FFT batch


def wavelength_m(energy_kev: float) -> float:
    """X-ray wavelength in metres for a photon energy in keV (12.398 keV → 0.1 nm).

    >>> round(wavelength_m(12.398) * 1e9, 4)
    0.1
    """
    return HC_KEV_M / energy_kev


def _check(pixel_size_um, distance_mm, energy_kev, delta_beta, method) -> None:
    if method not in METHODS:
        raise InputError(f"unknown phase retrieval method {method!r}; choose one of {', '.join(METHODS)}")
    for name, value in (
        ("pixel_size_um", pixel_size_um),
        ("distance_mm", distance_mm),
        ("energy_kev", energy_kev),
        ("delta_beta", delta_beta),
    ):
        try:
            ok = math.isfinite(float(value)) and float(value) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"phase retrieval needs {name} > 0; got {value!r}")


def filter_length_px(pixel_size_um: float, distance_mm: float, energy_kev: float, delta_beta: float) -> float:
    """The Paganin filter's length scale ``sqrt(z (δ/β) λ / 4π)`` in pixels (its blur radius).

    >>> round(filter_length_px(1.0, 50.0, 20.0, 100.0), 2)
    4.97
    """
    _check(pixel_size_um, distance_mm, energy_kev, delta_beta, "paganin")
    length_m = math.sqrt(distance_mm * 1e-3 * delta_beta * wavelength_m(energy_kev) / (4 * math.pi))
    return length_m / (pixel_size_um * 1e-6)


def margin_px(pixel_size_um: float, distance_mm: float, energy_kev: float, delta_beta: float) -> int:
    """Rows/columns of context the filter needs around a region (8 filter lengths, at least 8 px)."""
    return max(8, int(math.ceil(8 * filter_length_px(pixel_size_um, distance_mm, energy_kev, delta_beta))))


def _paganin_filter(shape: tuple[int, int], pixel_m: float, distance_m: float, wavelength: float, delta_beta: float):
    ky = 2 * np.pi * np.fft.fftfreq(shape[0], d=pixel_m)
    kx = 2 * np.pi * np.fft.rfftfreq(shape[1], d=pixel_m)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    return 1.0 / (1.0 + distance_m * delta_beta * wavelength / (4 * np.pi) * k2)


def retrieve_phase_steps(
    projections,
    *,
    pixel_size_um: float,
    distance_mm: float,
    energy_kev: float,
    delta_beta: float,
    method: str = "paganin",
    pad: bool = True,
    device="auto",
) -> Generator[Progress, None, np.ndarray]:
    """:func:`retrieve_phase` as a generator yielding :class:`Progress` per batch of projections."""
    _check(pixel_size_um, distance_mm, energy_kev, delta_beta, method)
    data = np.asarray(projections, dtype=np.float32)
    single = data.ndim == 2
    if single:
        data = data[None]
    if data.ndim != 3 or 0 in data.shape:
        raise InputError(
            f"projections must be (angles, rows, cols) or one (rows, cols) image; got shape {np.shape(projections)}"
        )
    if not np.isfinite(data).all() or (data <= 0).any():
        raise InputError(
            "phase retrieval needs flat-field-corrected intensities (I/I₀ > 0, finite), not line integrals "
            "or raw counts with zeros: normalise without −log first"
        )
    n, rows, cols = data.shape
    # edge padding to twice the size (plus the filter's reach) keeps FFT wrap-around off the image
    m = margin_px(pixel_size_um, distance_mm, energy_kev, delta_beta) if pad else 0
    pr, pc = (rows + 2 * m, cols + 2 * m)
    if pad:
        pr, pc = max(pr, 2 * rows), max(pc, 2 * cols)
    top, left = (pr - rows) // 2, (pc - cols) // 2
    dev = resolve_device(device)
    filt = torch.as_tensor(
        _paganin_filter((pr, pc), pixel_size_um * 1e-6, distance_mm * 1e-3, wavelength_m(energy_kev), delta_beta),
        dtype=torch.float32,
        device=dev,
    )
    per_batch = max(1, _BLOCK_BYTES // (pr * pc * 8))
    out = np.empty_like(data)
    for start in range(0, n, per_batch):
        block = data[start : start + per_batch]
        padded = np.pad(block, ((0, 0), (top, pr - rows - top), (left, pc - cols - left)), mode="edge")
        t = torch.as_tensor(padded, device=dev)
        filtered = torch.fft.irfft2(torch.fft.rfft2(t) * filt, s=(pr, pc))[:, top : top + rows, left : left + cols]
        # the filter is a low-pass with unit gain at k=0, so positive intensities stay positive
        out[start : start + len(block)] = (-torch.log(filtered.clamp_min(1e-12))).cpu().numpy()
        yield Progress(min(start + per_batch, n), n, "phase retrieval (Paganin)")
    return out[0] if single else out


def retrieve_phase(
    projections,
    *,
    pixel_size_um: float,
    distance_mm: float,
    energy_kev: float,
    delta_beta: float,
    method: str = "paganin",
    pad: bool = True,
    device="auto",
    progress: ProgressArg = None,
) -> np.ndarray:
    """Paganin phase retrieval of flat-field-corrected intensities → line integrals ``μ T``.

    ``projections`` are intensities ``I/I₀`` ``(angles, rows, cols)`` or one ``(rows, cols)``
    image (normalised, *without* −log); ``pixel_size_um`` the detector pixel, ``distance_mm``
    the sample–detector distance, ``energy_kev`` the photon energy, ``delta_beta`` the ratio
    δ/β of the (single) material. Returns float32 line integrals of the same shape (−log of the
    filtered intensity); thickness is that divided by ``μ = 4πβ/λ``. ``pad`` edge-pads each
    image to at least twice its size so the FFT does not wrap.

    >>> import numpy as np
    >>> intensity = np.full((1, 32, 32), np.exp(-0.2), np.float32)   # uniform attenuation
    >>> li = retrieve_phase(intensity, pixel_size_um=0.65, distance_mm=30, energy_kev=25, delta_beta=300)
    >>> round(float(li.mean()), 4)
    0.2
    """
    return run_to_end(
        retrieve_phase_steps(
            projections,
            pixel_size_um=pixel_size_um,
            distance_mm=distance_mm,
            energy_kev=energy_kev,
            delta_beta=delta_beta,
            method=method,
            pad=pad,
            device=device,
        ),
        progress,
    )


def parse_phase_option(text: str, metadata: dict | None = None) -> dict[str, float]:
    """``"delta_beta=200,distance_mm=50,energy_kev=20[,pixel_size_um=0.65]"`` → retrieve_phase kwargs.

    The pixel size may come from the scan's ``metadata["pixel_size_um"]`` (DXchange, NXtomo).

    >>> parse_phase_option("delta_beta=200,distance_mm=50,energy_kev=20", {"pixel_size_um": 0.65})
    {'delta_beta': 200.0, 'distance_mm': 50.0, 'energy_kev': 20.0, 'pixel_size_um': 0.65}
    """
    names = ("delta_beta", "distance_mm", "energy_kev", "pixel_size_um")
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise InputError(f"--phase takes {','.join(n + '=…' for n in names)}; got {part!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise InputError(f"--phase {key}={value!r} is not a number") from None
    if "pixel_size_um" not in out and (metadata or {}).get("pixel_size_um"):
        out["pixel_size_um"] = float(metadata["pixel_size_um"])
    missing = [n for n in names if n not in out]
    if missing:
        raise InputError(
            f"--phase needs {', '.join(missing)} (the scan file gives no pixel size)"
            if missing == ["pixel_size_um"]
            else f"--phase needs {', '.join(missing)}"
        )
    _check(out["pixel_size_um"], out["distance_mm"], out["energy_kev"], out["delta_beta"], "paganin")
    return out
