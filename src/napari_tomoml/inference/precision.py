"""Lower-precision inference where the hardware runs it natively, fp32 everywhere else.

``precision="auto"`` asks a capability probe: bf16 autocast on a CUDA GPU that supports bf16 and
on a CPU with AVX-512 BF16 or AMX (where oneDNN runs bf16 convolutions at up to twice the fp32
rate), fp32 otherwise (elsewhere torch emulates bf16, slower than fp32). ``"fp32"`` and ``"bf16"``
force a choice; bf16 is accepted only with its quality measured against fp32 (:func:`psnr`).

>>> import torch
>>> resolve_precision("fp32", torch.device("cpu"))
'fp32'
>>> with autocast("bf16", torch.device("cpu")):
...     y = torch.nn.Linear(4, 4)(torch.ones(1, 4))
>>> y.dtype
torch.bfloat16
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags (Linux /proc/cpuinfo names) of native bf16 arithmetic.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where the OS does not list them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (so bf16 autocast is faster, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in _BF16_FLAGS)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` (one of :data:`PRECISIONS`) on ``device``.

    >>> resolve_precision("auto", torch.device("meta"))
    'fp32'
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise InputError(f"bf16 inference runs on CPU or CUDA, not {device.type}; use precision='fp32'")
    return precision


def autocast(precision: str, device: torch.device):
    """A context running a network's forward pass at ``precision`` (resolved: "fp32" or "bf16").

    Convolutions and matrix products run in bf16, reductions and normalisations stay fp32
    (torch's autocast lists); callers convert the output back with ``.float()``.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def psnr(test: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of ``test`` against ``reference`` over the reference's range.

    >>> round(psnr(np.array([0.0, 1.0]), np.array([0.0, 1.0 + 1e-3])), 1)   # 1e-3 off in one of two
    63.0
    """
    reference = np.asarray(reference, np.float64)
    mse = float(np.mean((np.asarray(test, np.float64) - reference) ** 2))
    span = float(reference.max() - reference.min())
    return float("inf") if mse == 0 else float(10 * np.log10(span**2 / mse))
