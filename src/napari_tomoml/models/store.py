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

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError
from .aligner import MomentAligner
from .normalization import DEFAULT_NORMALIZATION
from .ptychonn import PtychoNN
from .tomogan import TomoGAN
from .unet import UNet

CARD_FORMAT = "napari-tomoml-model"
CARD_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
ARCHITECTURES: dict[str, type[nn.Module]] = {"moment-aligner": MomentAligner, "ptychonn": PtychoNN, "tomogan": TomoGAN, "unet": UNet}


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


def save_model(module: nn.Module, path: str | Path, *, overwrite: bool = True, **card_fields: Any) -> Path:
    """Write ``module`` as ``<path>.safetensors`` + ``<path>.json``; returns the weights path.

    ``card_fields`` fill the card: ``normalization``, ``training``, ``metrics``, ``description``.
    Both files are written atomically (weights first, card last); the card records the weights'
    SHA-256, so a card and weights from different saves are refused on loading. With
    ``overwrite=False`` an existing weights file or card is refused (:class:`OutputExistsError`).

    >>> save_model(TomoGAN(), "/tmp/my-tomogan", metrics={"psnr": 30.1})   # doctest: +SKIP
    PosixPath('/tmp/my-tomogan.safetensors')
    """
    from safetensors.torch import save

    from ..io.writers import atomic_output, check_output

    weights, card_path = _paths(Path(path))
    for target in (weights, card_path):
        check_output(target, overwrite=overwrite)
    card = make_card(module, **card_fields)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFileError(f"refusing to save {weights}: tensor {bad[0]} holds NaN/inf (training diverged?)")
    data = save(state, metadata={"format": "pt", "architecture": card["architecture"]})
    card["weights_sha256"] = hashlib.sha256(data).hexdigest()
    # nested: the weights are renamed into place first, the card (which names them) last
    with atomic_output(card_path, overwrite=overwrite) as card_tmp, atomic_output(weights, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o644)  # bundled/shared models must be readable by others
        card_tmp.write_text(json.dumps(card, indent=2) + "\n")
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
    version = card.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{path}: format_version must be a whole number, got {version!r}")
    if version > CARD_VERSION:
        raise ModelFileError(f"{path} was written by a newer napari-tomoml (card version {version})")
    if not isinstance(card.get("architecture"), str):
        raise ModelFileError(f"{path}: architecture must be a name like \"tomogan\", got {card.get('architecture')!r}")
    if not isinstance(card.get("config", {}), dict):
        raise ModelFileError(f"{path}: config must be an object of settings, got {card.get('config')!r}")
    card.setdefault("normalization", dict(DEFAULT_NORMALIZATION))
    _check_normalization(path, card["normalization"])
    return card


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_normalization(path: Path, spec: Any) -> None:
    """The card's input normalisation must describe a usable, invertible mapping."""
    where = f"{path}: normalization"
    if not isinstance(spec, dict):
        raise ModelFileError(f"{where} must be an object like {json.dumps(DEFAULT_NORMALIZATION)}, got {spec!r}")
    kind = spec.get("kind")
    if kind == "affine":
        if not (_number(spec.get("offset")) and _number(spec.get("scale")) and spec["scale"] != 0):
            raise ModelFileError(f"{where}: an affine mapping needs a number offset and a non-zero number scale")
    elif kind == "percentile":
        pcts, rng = spec.get("percentiles", [0.5, 99.5]), spec.get("range", [0.0, 1.0])
        if not (isinstance(pcts, list) and len(pcts) == 2 and all(_number(x) and 0 <= x <= 100 for x in pcts)):
            raise ModelFileError(f"{where}: percentiles must be two numbers between 0 and 100, got {pcts!r}")
        if not pcts[0] < pcts[1]:
            raise ModelFileError(f"{where}: percentiles {pcts} must be increasing (low, high)")
        if not (isinstance(rng, list) and len(rng) == 2 and all(_number(x) for x in rng) and rng[0] != rng[1]):
            raise ModelFileError(f"{where}: range must be two different numbers, got {rng!r}")
    else:
        raise ModelFileError(f"{where} kind {kind!r} is unknown: use 'percentile' or 'affine'")


def _paths(path: Path) -> tuple[Path, Path]:
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def _resolve(spec: str | Path) -> tuple[Path, Path]:
    path = Path(spec)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(
            f"{path}: {path.suffix} files are Python pickles, which can run code when loaded, and are refused; "
            "use a safetensors model file with its JSON card (see tm.save_model)"
        )
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

    expected_hash = card.get("weights_sha256")
    if expected_hash is not None and _sha256(weights) != expected_hash:
        raise ModelFileError(
            f"{weights} does not match its card {weights.with_suffix('.json').name} (SHA-256 differs): "
            "the weights were changed or their saving was interrupted; save the model again"
        )
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
        if expected[key].is_floating_point() and not tensor.is_floating_point():  # counters may be stored as float
            raise ModelFileError(f"{weights}: tensor {key} is {tensor.dtype}, {described} needs {expected[key].dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{weights}: tensor {key} holds NaN/inf values; the file is corrupt or training diverged")
    module.load_state_dict(state)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
