"""napari-tomoml: machine-learning methods for X-ray tomography, in napari, scripts and batch.

>>> import napari_tomoml as tm
>>> scan = tm.load_scan("tooth.h5")                         # doctest: +SKIP
>>> sino = tm.normalize(scan)                               # doctest: +SKIP
>>> rec = tm.fbp(sino, scan.theta, center=tm.find_center(sino, scan.theta))  # doctest: +SKIP

Public names are imported lazily, so ``import napari_tomoml`` stays fast and never needs Qt.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_PUBLIC = {
    "Scan": ".io.scan",
    "load_scan": ".io",
    "normalize": ".prep",
    "project": ".recon",
    "backproject": ".recon",
    "fbp": ".recon",
    "find_center": ".recon",
    "sirt": ".recon",
    "cgls": ".recon",
    "solve": ".recon",
    "remove_stripes": ".recon",
    "retrieve_phase": ".recon.phase",
    "read_volume": ".io.volume",
    "reconstruct": ".tasks.reconstruct",
    "denoise": ".tasks.denoise",
    "embed": ".tasks.embed",
    "outlier_scores": ".tasks.embed",
    "train_unet": ".tasks.segment",
    "segment": ".tasks.segment",
    "save_model": ".tasks.segment",
    "align": ".tasks.align",
    "apply_shifts": ".tasks.align",
    "train_aligner": ".tasks.align",
    "import_tomogan_keras": ".models.keras_import",
    "TomomlError": ".errors",
    "Progress": ".progress",
    "ptycho": ".ptycho",  # a subpackage: tm.ptycho.simulate(...)
    "batch": ".tasks.batch",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'napari_tomoml' has no attribute {name!r}") from None
    imported = importlib.import_module(module, __name__)
    # a public name may be a submodule itself (tm.ptycho)
    value = imported if imported.__name__ == f"{__name__}.{name}" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
