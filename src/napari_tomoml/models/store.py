"""Model files: safetensors weights plus a JSON card beside them; a registry of bundled models.

A model called ``foo`` is two files, ``foo.safetensors`` (tensors only, never pickled) and
``foo.json`` (the card)::

    {"format": "napari-tomoml-model", "format_version": 1,
     "architecture": "tomogan", "config": {"depth": 3, "upsample": "bilinear"},
     "normalization": {"kind": "percentile", "percentiles": [0.5, 99.5], "range": [0, 1]},
     "training": {...what it was trained on, how long...}, "metrics": {...measured...},
     "description": "...", "version": "napari-tomoml 0.1.0", "created": "2025-..."}

Bundled models live in ``napari_tomoml/weights/`` and are loaded by name (``"tomogan-lowdose"``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError
from .normalization import DEFAULT_NORMALIZATION
from .tomogan import TomoGAN

CARD_FORMAT = "napari-tomoml-model"
CARD_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
ARCHITECTURES: dict[str, type[nn.Module]] = {"tomogan": TomoGAN}


@dataclass
class LoadedModel:
    """A network ready for inference together with its card (normalisation, provenance).

    >>> m = LoadedModel(TomoGAN(depth=1))
    >>> m.card["architecture"], m.normalization["kind"]
    ('tomogan', 'percentile')
    """

    module: nn.Module
    card: dict[str, Any] = field(default_factory=dict)
    source: str = "in memory"

    def __post_init__(self) -> None:
        self.card = {**make_card(self.module), **self.card}

    @property
    def normalization(self) -> dict[str, Any]:
        return self.card["normalization"]


def architecture_name(module: nn.Module) -> str:
    """The registered name of a network's architecture, as written in its card.

    >>> architecture_name(TomoGAN())
    'tomogan'
    """
    for name, cls in ARCHITECTURES.items():
        if isinstance(module, cls):
            return name
    raise ModelFileError(f"{type(module).__name__} is not a storable architecture; known: {', '.join(ARCHITECTURES)}")


def make_card(module: nn.Module, **fields: Any) -> dict[str, Any]:
    """A complete card for ``module``; ``fields`` (normalization, training, metrics, ...) override.

    >>> make_card(TomoGAN(depth=5))["config"]
    {'depth': 5, 'upsample': 'bilinear'}
    """
    from .. import __version__

    card = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "architecture": architecture_name(module),
        "config": dict(module.config),
        "normalization": dict(DEFAULT_NORMALIZATION),
        "training": {},
        "metrics": {},
        "description": "",
        "version": f"napari-tomoml {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    card.update({k: v for k, v in fields.items() if v is not None})
    return card


def save_model(module: nn.Module, path: str | Path, **card_fields: Any) -> Path:
    """Write ``module`` as ``<path>.safetensors`` + ``<path>.json``; returns the weights path.

    ``card_fields`` fill the card: ``normalization``, ``training``, ``metrics``, ``description``.

    >>> save_model(TomoGAN(), "/tmp/my-tomogan", metrics={"psnr": 30.1})   # doctest: +SKIP
    PosixPath('/tmp/my-tomogan.safetensors')
    """
    from safetensors.torch import save_file

    weights, card_path = _paths(Path(path))
    card = make_card(module, **card_fields)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "pt", "architecture": card["architecture"]})
    weights.chmod(0o644)  # safetensors writes owner-only files; bundled/shared models must be readable
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return weights


def bundled_models() -> list[str]:
    """Names of the models shipped with the package.

    >>> "tomogan-lowdose" in bundled_models()    # doctest: +SKIP
    True
    """
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors") if p.with_suffix(".json").is_file())


KERAS_SUFFIXES = (".h5", ".hdf5")


def model_cache_dir() -> Path:
    """Where imported models are kept: ``$XDG_CACHE_HOME/napari-tomoml/models`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-tomoml" / "models"


def load_model(spec: str | Path | LoadedModel | nn.Module, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model from a bundled name, a file path (``.safetensors``/``.json``/stem) or pass one through.

    An ``nn.Module`` without a card gets the default card (percentile normalisation to [0, 1]).

    >>> load_model("tomogan-lowdose").card["config"]             # doctest: +SKIP
    {'depth': 3, 'upsample': 'bilinear'}
    >>> load_model("/data/models/my-tomogan.safetensors")      # doctest: +SKIP
    >>> load_model("TomoGAN.h5")   # the published Keras file, imported once into model_cache_dir()  # doctest: +SKIP
    """
    if isinstance(spec, LoadedModel):
        spec.module.to(device).eval()
        return spec
    if isinstance(spec, nn.Module):
        return LoadedModel(spec.to(device).eval())
    if Path(str(spec)).suffix.lower() in KERAS_SUFFIXES:
        from .keras_import import import_tomogan_keras_cached

        spec = import_tomogan_keras_cached(spec)
    weights, card_path = _resolve(spec)
    card = read_card(card_path)
    cls = ARCHITECTURES.get(card.get("architecture"))
    if cls is None:
        raise ModelFileError(
            f"{card_path}: architecture {card.get('architecture')!r} is unknown; known: {', '.join(ARCHITECTURES)}"
        )
    try:
        module = cls(**card.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{card_path}: config {card.get('config')} is invalid for {card['architecture']}: {exc}") from exc
    _load_weights(module, weights, card)
    return LoadedModel(module.to(device).eval(), card, source=str(weights))


def read_card(path: str | Path) -> dict[str, Any]:
    """Read and check a model card (the ``.json`` beside the weights).

    >>> read_card("tomogan-lowdose.json")["architecture"]        # doctest: +SKIP
    'tomogan'
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model card {path} is missing: a model file needs its .json card beside the .safetensors")
    try:
        card = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model card {path} is not valid JSON ({exc})") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{path} is not a napari-tomoml model card (no \"format\": \"{CARD_FORMAT}\")")
    if card.get("format_version", 0) > CARD_VERSION:
        raise ModelFileError(f"{path} was written by a newer napari-tomoml (card version {card['format_version']})")
    return card


def _paths(path: Path) -> tuple[Path, Path]:
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _resolve(spec: str | Path) -> tuple[Path, Path]:
    path = Path(spec)
    weights, card = _paths(path)
    if weights.is_file() or card.is_file():
        if not weights.is_file():
            raise ModelFileError(f"model weights {weights} are missing (found only the card {card})")
        return weights, card
    if isinstance(spec, str) and spec in bundled_models():
        return _paths(WEIGHTS_DIR / spec)
    known = ", ".join(bundled_models()) or "none installed"
    raise ModelFileError(f"model {str(spec)!r} is neither an existing model file nor a bundled model ({known})")


def _load_weights(module: nn.Module, weights: Path, card: dict) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{weights} is not a safetensors file ({exc})") from exc
    expected = module.state_dict()
    described = f"{card['architecture']}({', '.join(f'{k}={v}' for k, v in card.get('config', {}).items())})"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing tensor {missing[0]}" if missing else f"unexpected tensor {unexpected[0]}"
        raise ModelFileError(f"{weights} does not hold {described} weights: {what}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelFileError(
                f"{weights}: tensor {key} has shape {tuple(tensor.shape)} but {described} needs {tuple(expected[key].shape)}"
            )
    module.load_state_dict(state)
