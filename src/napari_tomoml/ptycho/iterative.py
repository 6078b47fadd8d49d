"""ePIE (extended ptychographic iterative engine) on torch, batched: the iterative reference.

Maiden & Rodenburg, "An improved ptychographical phase retrieval algorithm for diffractive
imaging", Ultramicroscopy 109, 1256 (2009). Each position's exit wave ``psi = P * O_window`` is
propagated to the detector, its modulus replaced by the measured ``sqrt(I)``, propagated back,
and the difference updates the object (and, optionally, the probe):

    O += alpha * conj(P) / max|P|^2 * (psi' - psi)        P += beta * conj(O) / max|O|^2 * (psi' - psi)

``batch`` positions are processed at once (their object updates averaged where they overlap), so
the work is a few large FFTs instead of many small ones; ``batch=1`` is the classical sequential
ePIE. Same conventions as :mod:`napari_tomoml.ptycho.sim` (orthonormal FFT, centred patterns).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch

from ..device import resolve_device
from ..errors import InputError
from ..progress import Progress, ProgressArg, run_to_end
from .sim import check_patterns, check_positions, windows


def epie_steps(
    patterns: np.ndarray,
    positions: np.ndarray,
    probe: np.ndarray,
    *,
    iterations: int = 100,
    shape: tuple[int, int] | None = None,
    update_probe: bool = False,
    probe_start: int = 5,
    alpha: float = 1.0,
    beta: float = 1.0,
    batch: int = 16,
    rescale_probe: bool = False,
    tol: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray]]:
    """:func:`epie` as a generator yielding one :class:`Progress` per iteration (cancel at a yield); each
    carries ``data={"change": ...}``, the iteration's mean phase change (rad) where the scan lit the object."""
    pats = check_patterns(patterns)
    pos = check_positions(positions, len(pats))
    probe = np.asarray(probe)
    n = pats.shape[1]
    if probe.shape != (n, n):
        raise InputError(f"the probe is {probe.shape} but the patterns are {n} x {n}: they must match")
    if iterations < 1 or batch < 1:
        raise InputError(f"iterations and batch must be at least 1, got {iterations} and {batch}")
    corners = windows(pos, n)
    if corners.min() < 0:
        raise InputError(f"probe centres must be at least {n // 2} pixels from the object's top/left edge")
    need = corners.max(axis=0) + n
    shape = tuple(int(v) for v in (need if shape is None else shape))
    if shape[0] < need[0] or shape[1] < need[1]:
        raise InputError(f"object shape {shape} is too small for the scan: it needs at least {tuple(need)}")
    dev = resolve_device(device)
    cdtype = torch.complex64
    measured = torch.sqrt(torch.from_numpy(np.fft.ifftshift(pats, axes=(-2, -1))).clamp_min(0)).to(dev)
    P = torch.as_tensor(probe, dtype=cdtype).to(dev)
    if rescale_probe:  # match the brightest pattern's photons (the most transparent part of the object)
        P = P * np.sqrt(float(pats.sum(axis=(1, 2)).max()) / float((P.abs() ** 2).sum()))
    O = torch.ones(shape, dtype=cdtype, device=dev)
    idx = torch.arange(n, device=dev)
    cy = torch.from_numpy(corners[:, 0]).to(dev)
    cx = torch.from_numpy(corners[:, 1]).to(dev)
    rng = np.random.default_rng(seed)
    flat_shape = shape[0] * shape[1]
    lit = torch.zeros(flat_shape, dtype=torch.bool, device=dev)
    for it in range(iterations):
        start = O.clone()
        for chunk in np.array_split(rng.permutation(len(pats)), max(1, int(np.ceil(len(pats) / batch)))):
            b = torch.from_numpy(chunk).to(dev)
            rows = (cy[b, None] + idx)[:, :, None]
            cols = (cx[b, None] + idx)[:, None, :]
            flat = (rows * shape[1] + cols).reshape(len(chunk), -1)  # (B, n*n) indices into O
            o = O.reshape(-1)[flat].reshape(len(chunk), n, n)
            psi = P * o
            far = torch.fft.fft2(psi, norm="ortho")
            far = measured[b] * torch.exp(1j * torch.angle(far))
            diff = torch.fft.ifft2(far, norm="ortho") - psi
            d_obj = alpha * P.conj() / (P.abs() ** 2).max() * diff
            # overlapping windows of one batch: average their updates
            num = torch.zeros(flat_shape, dtype=cdtype, device=dev).index_add_(0, flat.reshape(-1), d_obj.reshape(-1))
            cnt = torch.zeros(flat_shape, dtype=torch.float32, device=dev).index_add_(
                0, flat.reshape(-1), torch.ones(flat.numel(), device=dev))
            O = O + (num / cnt.clamp_min(1)).reshape(shape)
            if it == 0:
                lit |= cnt > 0
            if update_probe and it >= probe_start:
                d_probe = beta * o.conj() / (o.abs() ** 2).amax(dim=(1, 2), keepdim=True).clamp_min(1e-12) * diff
                P = P + d_probe.mean(dim=0)
        change = float(torch.angle(O.reshape(-1)[lit] * start.reshape(-1)[lit].conj()).abs().mean())
        yield Progress(it + 1, iterations, "ePIE iteration", data={"change": change})
        if tol is not None and change < tol:
            break
    return O.cpu().numpy(), P.cpu().numpy()


def epie(
    patterns: np.ndarray,
    positions: np.ndarray,
    probe: np.ndarray,
    *,
    iterations: int = 100,
    shape: tuple[int, int] | None = None,
    update_probe: bool = False,
    probe_start: int = 5,
    alpha: float = 1.0,
    beta: float = 1.0,
    batch: int = 16,
    rescale_probe: bool = False,
    tol: float | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressArg = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Retrieve the complex object (and refine the probe) from diffraction ``patterns`` by ePIE.

    ``patterns`` (N, n, n) centred intensities, ``positions`` (N, 2) probe centres (y, x) in
    object pixels, ``probe`` (n, n) complex in sqrt(photons) (as given to
    :func:`~napari_tomoml.ptycho.simulate`, or a guess with ``rescale_probe=True`` and
    ``update_probe=True``). The object starts as ones of ``shape`` (default: just what the scan
    covers); positions are visited in a new random order each iteration, ``batch`` at a time.
    With ``tol`` it stops early, once an iteration changes the phase by less than ``tol`` rad on
    average (its own convergence; ``iterations`` is then the most it may run). Returns
    ``(obj, probe)`` complex64.

    >>> import napari_tomoml as tm
    >>> truth = tm.ptycho.random_object((64, 64), seed=0)
    >>> probe = tm.ptycho.focused_probe(32, photons=1e6)
    >>> pos = tm.ptycho.raster_scan(truth.shape, 32, tm.ptycho.probe_diameter(probe), overlap=0.7)
    >>> pat = tm.ptycho.simulate(truth, probe, pos, photons=None)
    >>> obj, _ = tm.ptycho.epie(pat, pos, probe, iterations=60, device="cpu")
    >>> centre = (slice(24, 40), slice(24, 40))   # scores with the global phase offset removed:
    >>> bool(tm.ptycho.phase_scores(np.angle(obj), np.angle(truth), centre)["mae"] < 0.05)
    True
    """
    return run_to_end(
        epie_steps(patterns, positions, probe, iterations=iterations, shape=shape, update_probe=update_probe,
                   probe_start=probe_start, alpha=alpha, beta=beta, batch=batch, rescale_probe=rescale_probe,
                   tol=tol, seed=seed, device=device),
        progress,
    )
