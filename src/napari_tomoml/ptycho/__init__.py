"""Ptychography: simulation, ePIE, stitching, PtychoNN training/inference and live phase retrieval.

>>> import napari_tomoml as tm
>>> obj = tm.ptycho.random_object((128, 128), seed=0)                       # doctest: +SKIP
>>> probe = tm.ptycho.focused_probe(64, photons=1e6)                         # doctest: +SKIP
>>> pos = tm.ptycho.spiral_scan(obj.shape, 64, 20, overlap=0.6)              # doctest: +SKIP
>>> patterns = tm.ptycho.simulate(obj, probe, pos, photons=1e6)              # doctest: +SKIP
>>> rec, probe2 = tm.ptycho.epie(patterns, pos, probe, iterations=50)        # doctest: +SKIP
>>> labels = tm.ptycho.patches(rec, pos, 64)                                 # doctest: +SKIP
>>> model = tm.ptycho.train(patterns, np.abs(labels), np.angle(labels))      # doctest: +SKIP
>>> amp, ph = tm.ptycho.predict(patterns, model=model)                       # doctest: +SKIP
>>> image = tm.ptycho.stitch(ph, pos, obj.shape)                             # doctest: +SKIP

Submodules: ``sim`` (objects, probe, scans, diffraction), ``stitching``, ``iterative`` (ePIE), ``compare``,
``io`` (the published PtychoNN data layout), ``nn`` (train/predict/ONNX), ``live`` (frame
sources and the live inference engine), ``online`` (online training with hot swap).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "simulate": ".sim", "random_object": ".sim", "object_from_image": ".sim", "focused_probe": ".sim",
    "probe_diameter": ".sim", "raster_scan": ".sim", "spiral_scan": ".sim", "detector_reduce": ".sim",
    "patches": ".sim",
    "stitch": ".stitching", "Stitcher": ".stitching", "illumination": ".stitching",
    "epie": ".iterative", "epie_steps": ".iterative",
    "align_phase": ".compare", "phase_scores": ".compare",
    "load_dataset": ".io",
    "train": ".nn", "train_steps": ".nn", "predict": ".nn", "export_onnx": ".nn", "OnnxPredictor": ".nn",
    "stitch_weights": ".nn",
    "SimulatedDetector": ".live", "FolderSource": ".live", "PvaSource": ".live", "LiveEngine": ".live",
    "live_steps": ".live", "run_live": ".live", "PvaDetectorServer": ".live",
    "LabelledPairs": ".online", "online_train_steps": ".online",
}

__all__ = sorted(_PUBLIC)


_SUBMODULES = {"sim", "stitching", "iterative", "compare", "io", "nn", "live", "online"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # tm.ptycho.live.FrameBuffer without an explicit import
        return importlib.import_module(f".{name}", __name__)
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'napari_tomoml.ptycho' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
