"""Alignment of misaligned projection stacks: the public task (API, CLI and widget call this).

Convention: ``shifts`` is ``(angles, 2)`` = ``(dy, dx)`` in pixels, and the measured projection
is ``scipy.ndimage.shift(aligned_projection, (dy, dx))``; :func:`apply_shifts` undoes them.
Parts of the shifts that a rigid move of the sample explains (``dx = a cos + b sin``, a constant
``dy``) cannot be measured and are returned as zero; a constant ``dx`` is a rotation-centre
offset, returned only when ``joint`` refines the centre.

Methods: ``"xcorr"`` sequential cross-correlation of neighbours; ``"joint"`` projection matching
(reconstruct, reproject, register, iterate, multi-resolution); ``"learned"`` the learned aligner
(:mod:`napari_tomoml.models.aligner`, bundled ``"aligner-moment"`` or a trained one).

>>> import napari_tomoml as tm
>>> from napari_tomoml.sim.misalign import simulate_misaligned
>>> s = simulate_misaligned(n=32, rows=16, n_angles=60, seed=0)
>>> shifts = tm.align(s.projections, s.theta, method="learned")
>>> from napari_tomoml.recon.align import residual_rms
>>> residual_rms(shifts, s.shifts, s.theta) < 0.3
True
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import resolve_device
from ..errors import InputError
from ..progress import Progress, ProgressArg, run_to_end
from ..recon import align as classical

METHODS = ("xcorr", "joint", "learned")
DEFAULT_MODEL = "aligner-moment"
# options each method accepts (besides device), with their defaults
OPTIONS: dict[str, dict[str, Any]] = {
    "xcorr": {},
    "joint": {"refine_center": True, "levels": (4, 2, 1), "iterations": 20, "tol": 0.01, "init": None},
    "learned": {"model": DEFAULT_MODEL, "iterations": 6},
}


def _as_array(projections) -> np.ndarray | torch.Tensor:
    if isinstance(projections, torch.Tensor):
        return projections.detach().float()
    return np.asarray(projections, dtype=np.float32)


def _options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    if method not in METHODS:
        raise InputError(f"unknown alignment method {method!r}; choose one of {', '.join(METHODS)}")
    allowed = OPTIONS[method]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"method {method!r} has no option {', '.join(unknown)}; its options: "
                         f"{', '.join(allowed) or 'none'}")
    return {**allowed, **options}


def _center(center, projections, theta) -> float | None:
    if isinstance(center, str):
        if center != "auto":
            raise InputError(f"center={center!r}: give detector pixels, None (the middle) or 'auto'")
        from ..recon import find_center

        return float(find_center(np.asarray(projections), theta))
    return None if center is None else float(center)


def _learned_steps(proj, theta, model, iterations, device):
    from ..models.aligner import MomentAligner, predict_shifts
    from ..models.store import load_model

    loaded = load_model(model, device=device)
    if not isinstance(loaded.module, MomentAligner):
        raise InputError(f"model {model!r} is a {loaded.card.get('architecture')} model, not an aligner")
    tensor = classical._tensor(proj).to(device)
    shifts = yield from predict_shifts(loaded.module, tensor, theta, iterations=int(iterations))
    return shifts, {"model": loaded.source, "card": loaded.card}


def align_steps(
    projections, theta, *, method: str = "joint", center=None, device="auto", **options: Any
) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """:func:`align` as a generator of :class:`Progress`; returns ``(shifts, metadata)``.

    ``metadata`` holds the method, its options, the seconds taken and, for ``joint``, the
    centre used and the refined centre (``center + mean(dx)``).
    """
    opts = _options(method, options)
    proj, theta = classical.check_stack(_as_array(projections), theta)
    dev = resolve_device(device)
    start = time.perf_counter()
    meta: dict[str, Any] = {"task": "align", "method": method}
    if method == "xcorr":
        shifts = yield from classical.xcorr_steps(proj, theta, device=dev)
    elif method == "learned":
        shifts, extra = yield from _learned_steps(proj, theta, opts["model"], opts["iterations"], dev)
        meta.update(extra)
        meta["model"] = str(opts["model"]) if isinstance(opts["model"], (str, Path)) else meta["model"]
    else:
        initial = None
        if opts["init"] is not None:
            if opts["init"] not in ("xcorr", "learned"):
                raise InputError(f"init={opts['init']!r}: choose None, 'xcorr' or 'learned'")
            initial, _ = yield from align_steps(proj, theta, method=opts["init"], device=device)
        shifts, extra = yield from classical.joint_steps(
            proj, theta, center=_center(center, proj, theta), refine_center=bool(opts["refine_center"]),
            levels=tuple(opts["levels"]), iterations=int(opts["iterations"]), tol=float(opts["tol"]),
            initial=initial, device=dev,
        )
        meta.update(extra)
    meta["seconds"] = round(time.perf_counter() - start, 3)
    meta["options"] = {k: (str(v) if not isinstance(v, (int, float, bool, tuple, type(None))) else v)
                       for k, v in opts.items()}
    return np.asarray(shifts, dtype=np.float64), meta


def align(projections, theta, *, method: str = "joint", center=None, progress: ProgressArg = None,
          **options: Any) -> np.ndarray:
    """Shifts ``(angles, 2)`` = ``(dy, dx)`` px of each projection of a misaligned stack.

    ``projections``: ``(angles, rows, cols)`` line integrals (normalised, ``-log``); ``theta`` in
    radians. The measured projection equals ``scipy.ndimage.shift(aligned, (dy, dx))``; undo
    with :func:`apply_shifts`. ``method``:

    - ``"joint"`` (default): projection matching. Options ``refine_center`` (True: the centre
      offset is estimated and carried as a constant dx; False: ``center`` is kept), ``levels``
      (binning factors, coarse to fine, default (4, 2, 1)), ``iterations`` per level (20),
      ``tol`` (px, 0.01), ``init`` (None, ``"xcorr"`` or ``"learned"``: a first guess).
      ``center``: pixels from the detector's left edge, None (the middle) or ``"auto"``.
    - ``"xcorr"``: sequential cross-correlation of neighbouring projections (fast, drifts).
    - ``"learned"``: options ``model`` (a bundled name, a model file, or what
      :func:`train_aligner` returned; default ``"aligner-moment"``) and ``iterations`` (6).

    ``device``: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``. Unobservable parts
    (rigid moves of the sample) come back as zero. Bad input (one projection, ``theta`` of
    another length, NaN) raises :class:`~napari_tomoml.errors.InputError`.

    >>> shifts = tm.align(proj, theta, method="joint", center=295.5)    # doctest: +SKIP
    >>> aligned = tm.apply_shifts(proj, shifts)                          # doctest: +SKIP
    """
    shifts, _ = run_to_end(align_steps(projections, theta, method=method, center=center, **options), progress)
    return shifts


def apply_shifts(projections, shifts, *, device="auto"):
    """Undo ``shifts`` (``(angles, 2)`` = (dy, dx) px from :func:`align`): the aligned stack.

    Sub-pixel, by a Fourier phase ramp (exact for band-limited data). Edges: each projection is
    padded by repeating its border pixels before shifting, so what moves into view is the edge
    value continued (never data wrapped around from the other side). Numpy in → float32 numpy
    out, a tensor in → a tensor out; the input is never modified.

    >>> import numpy as np
    >>> from scipy import ndimage
    >>> img = np.zeros((1, 16, 16), np.float32); img[0, 6:10, 6:10] = 1
    >>> measured = ndimage.shift(img[0], (1.5, -2.0))[None]
    >>> back = apply_shifts(measured, [[1.5, -2.0]], device="cpu")
    >>> bool(np.abs(back - img).max() < 0.1)
    True
    """
    arr = _as_array(projections)
    if arr.ndim != 3:
        raise InputError(f"apply_shifts needs a stack (angles, rows, cols); got shape {tuple(arr.shape)}")
    finite = torch.isfinite(arr).all() if isinstance(arr, torch.Tensor) else np.isfinite(arr).all()
    if not bool(finite):
        raise InputError("projections contain NaN or infinite values; replace them first")
    s = classical.check_shifts(shifts, arr.shape[0])
    was_numpy = not isinstance(arr, torch.Tensor)
    tensor = torch.from_numpy(np.require(arr, np.float32, ['C', 'W'])) if was_numpy else arr
    dev = resolve_device(device) if was_numpy or device != "auto" else tensor.device
    out = classical.fourier_shift(tensor.to(dev), -torch.from_numpy(s).float())
    return out.cpu().numpy() if was_numpy else out


def train_aligner(
    *,
    steps: int = 600,
    batch: int = 2,
    n_phantoms: int = 16,
    family: str = "ellipsoids",
    size: int = 64,
    rows: int = 32,
    n_angles: int = 180,
    lr: float = 5e-4,
    val_every: int = 50,
    seed: int = 0,
    path: str | Path | None = None,
    progress: ProgressArg = None,
):
    """Train a learned aligner on simulated stacks, for ``align(method="learned", model=...)``.

    ``n_phantoms`` phantoms of ``family`` (``size`` px, ``rows`` rows in view, ``n_angles``
    over 180°) are misaligned afresh at each of ``steps`` steps (``batch`` stacks each: drift +
    jitter, noise, background drift); validation every ``val_every`` steps on held-out stacks.
    The training curve goes into the model card (``card["training"]["curve"]``); with ``path``
    the model is also saved (safetensors + JSON card). ``scripts/train_aligner.py`` made the
    bundled ``"aligner-moment"`` this way.

    >>> model = tm.train_aligner(steps=200, path="my-aligner")                 # doctest: +SKIP
    >>> shifts = tm.align(proj, theta, method="learned", model=model)          # doctest: +SKIP
    """
    from ..models.store import LoadedModel, save_model
    from ..training.aligner import AlignerData, train_aligner_steps, validation_stacks

    data = AlignerData(n=size, rows=rows, n_angles=n_angles, n_phantoms=n_phantoms, family=family, seed=seed)
    validation = validation_stacks(2, n=size, rows=rows, n_angles=n_angles, i0=1e3, background=0.02)
    model, record = run_to_end(
        train_aligner_steps(steps=steps, batch=batch, lr=lr, val_every=val_every, data=data,
                            validation=validation, seed=seed),
        progress,
    )
    card = {
        "normalization": {"kind": "affine", "offset": 0.0, "scale": 1.0},  # profiles normalised inside
        "training": {"steps": record["steps"], "batch": batch, "family": family, "phantoms": n_phantoms,
                     "size": size, "rows": rows, "n_angles": n_angles, "seed": seed,
                     "curve": record["curve"]},
        "metrics": {"val_rms_px": record["best_val_rms_px"]},
        "description": "learned aligner trained by napari_tomoml.train_aligner",
    }
    source = "in memory"
    if path is not None:
        source = str(save_model(model, path, **card))
    return LoadedModel(model, card, source=source)


def row_before_after(projections, shifts, theta, *, row: int | None = None, center=None, device="auto"):
    """FBP of one detector row before and after undoing ``shifts``: ``(before, after)`` slices.

    ``row`` defaults to the middle row; ``center`` to the detector middle (a refined centre from
    ``joint`` is already inside the shifts as a constant dx).

    >>> before, after = row_before_after(proj, shifts, theta)     # doctest: +SKIP
    """
    from ..recon import fbp

    proj = _as_array(projections)
    n_rows = proj.shape[1]
    row = n_rows // 2 if row is None else int(row)
    if not 0 <= row < n_rows:
        raise InputError(f"row {row} is outside the detector (0 to {n_rows - 1})")
    lo, hi = max(0, row - 4), min(n_rows, row + 5)  # a few rows around it, so dy can bring them in
    slab = np.asarray(proj[:, lo:hi], dtype=np.float32)
    aligned = apply_shifts(slab, shifts, device=device)
    before = fbp(slab[:, row - lo], theta, center, device=device)
    after = fbp(aligned[:, row - lo], theta, center, device=device)
    return before, after
