"""Reconstruction filters for filtered back-projection.

The ramp is built in real space and Fourier transformed (Kak & Slaney, eq. 61; as scikit-image
does): sampling ``|f|`` directly in frequency space leaves the filter without its correct DC term,
and reconstructions then carry a constant offset. Windows multiply the ramp to trade resolution
for noise; ``cutoff`` (fraction of Nyquist) narrows any of them.

>>> h = filter_response("hann", 256)
>>> h.shape, float(h[0]) < 0.01, float(h.max()) < 0.5
((129,), True, True)
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann", "parzen", "butterworth")


def padded_length(n_det: int) -> int:
    """FFT length: at least twice the next power of two, so the filtered signal never wraps."""
    return max(64, 2 ** int(np.ceil(np.log2(2 * n_det))))


def _ramp(n_pad: int) -> np.ndarray:
    """Real-space band-limited ramp (Kak & Slaney), as an ``rfft`` response of ~``|f|``."""
    k = np.fft.fftfreq(n_pad, d=1.0 / n_pad)  # signed integer offsets in FFT order
    h = np.zeros(n_pad)
    h[0] = 0.25
    odd = (k % 2) == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    return np.real(np.fft.rfft(h))


def _window(name: str, r: np.ndarray) -> np.ndarray:
    """Window over ``r = f / f_cutoff`` in ``[0, 1]`` (beyond the cutoff the caller zeroes it)."""
    if name == "ramp":
        return np.ones_like(r)
    if name == "shepp-logan":
        return np.sinc(r / 2)
    if name == "cosine":
        return np.cos(np.pi * r / 2)
    if name == "hamming":
        return 0.54 + 0.46 * np.cos(np.pi * r)
    if name == "hann":
        return 0.5 + 0.5 * np.cos(np.pi * r)
    if name == "parzen":
        return np.where(r <= 0.5, 1 - 6 * r**2 + 6 * r**3, 2 * (1 - r) ** 3)
    raise InputError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}")


def filter_response(filter_name: str, n_pad: int, *, cutoff: float = 1.0, order: int = 2) -> np.ndarray:
    """Frequency response (``n_pad // 2 + 1`` values, ``rfft`` order) of a named FBP filter.

    ``cutoff`` is a fraction of the Nyquist frequency (0 < cutoff ≤ 1); ``order`` is the
    Butterworth order.

    >>> r = filter_response("ramp", 64)
    >>> round(float(r[-1]), 2)   # |f| at Nyquist = 0.5 cycles per pixel
    0.5
    """
    if filter_name not in FILTERS:
        raise InputError(f"unknown filter {filter_name!r}; choose one of {', '.join(FILTERS)}")
    if not 0.0 < cutoff <= 1.0:
        raise InputError(f"filter cutoff={cutoff!r} must be a fraction of Nyquist in (0, 1]")
    if int(order) != order or order < 1:
        raise InputError(f"butterworth order={order!r} must be a positive integer")
    f = np.fft.rfftfreq(n_pad)  # cycles per pixel, 0 .. 0.5
    r = f / (0.5 * cutoff)
    if filter_name == "butterworth":  # a smooth roll-off at the cutoff, not a hard stop, is its point
        window = 1.0 / (1.0 + r ** (2 * int(order)))
    else:
        window = np.where(r <= 1.0, _window(filter_name, np.minimum(r, 1.0)), 0.0)
    return _ramp(n_pad) * window
