"""The one device rule: ``"auto"`` means CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a user's device choice into a :class:`torch.device`.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} was asked for but Apple MPS is not available; use 'auto' or 'cpu'")
    return dev


def available_devices() -> list[str]:
    """Device choices for a menu: ``auto``, ``cpu`` and each accelerator present.

    >>> available_devices()[:2]
    ['auto', 'cpu']
    """
    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices
