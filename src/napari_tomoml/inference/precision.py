"""Lower-precision inference where it is measurably faster, fp32 everywhere else.

Three precisions besides plain fp32 (torch, eager):

- ``"bf16"``: torch autocast; convolutions and matrix products in bf16. Fast only where the
  hardware computes bf16 natively (a CUDA GPU; a CPU with AVX-512 BF16 or AMX); elsewhere torch
  emulates it, many times slower than fp32 (9x for TomoGAN on an AVX2 EPYC).
- ``"int8"``: the network exported to ONNX and statically quantised by ONNX Runtime (QDQ,
  per-channel int8 weights, uint8 activations calibrated on tiles of the data being processed),
  run by ONNX Runtime on the CPU. On an AVX2 CPU without VNNI TomoGAN runs ~2.6x faster than
  fp32 torch at ~51 dB PSNR against it (``benchmarks/bench_denoise_precision.py``).
- ``"auto"``: the candidate a capability probe expects to be fastest (bf16 where native, else
  int8 on a CPU where ONNX Runtime is installed, else fp32), kept only if its output on the
  calibration tiles is within :data:`MIN_PSNR_DB` of fp32's; otherwise fp32.

Every lower-precision run measures its PSNR against fp32 on the calibration tiles and reports it
(:func:`napari_tomoml.inference.runner.make_predictor`), so no precision is used unmeasured.

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

PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: the quality a lower precision must keep against fp32 for ``"auto"`` to use it
MIN_PSNR_DB = 45.0
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


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime (the int8 engine; ``pip install napari-tomoml[onnx]``) is installed."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to try for ``precision`` (one of :data:`PRECISIONS`) on ``device``: ``"auto"``
    becomes the probe's candidate (see the module notes), a forced one is checked to run there.

    >>> resolve_precision("auto", torch.device("meta"))
    'fp32'
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if native_bf16(device):
            return "bf16"
        return "int8" if device.type == "cpu" and onnxruntime_available() else "fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise InputError(f"bf16 inference runs on CPU or CUDA, not {device.type}; use precision='fp32'")
    if precision == "int8":
        if device.type != "cpu":
            raise InputError(f"int8 inference runs on the CPU (ONNX Runtime), not {device.type}; use device='cpu'")
        if not onnxruntime_available():
            raise InputError("int8 inference needs ONNX Runtime: pip install 'napari-tomoml[onnx]'")
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
