"""One large scan or volume as many tasks: slabs of rows, each its own (Dask) task, one output.

``reconstruct`` splits a scan into slabs of detector rows, ``denoise`` a volume into slabs of
slices (each read with the neighbouring slices TomoGAN looks at). Each slab is computed by
:func:`napari_tomoml.tasks.reconstruct.reconstruct_scan_steps` /
:func:`~napari_tomoml.tasks.denoise.denoise_steps` on its rows alone and saved, atomically, as a
part in a hidden folder beside the output (``.OUT.parts/``); once every part exists they are
copied in order into the output through :func:`~napari_tomoml.io.writers.open_volume` (atomic
too) and the parts are removed. A part that exists is a finished one: a run that is killed or
cancelled continues, when started again, with the parts still missing.

What would differ between slabs is fixed once for the whole file before they start: the
rotation centre (``center="auto"`` is found on the middle rows of the scan, as a single-process
run does) and TomoGAN's intensity normalisation (fitted on the whole volume). Slab boundaries are
even, because the Fourier FBP reconstructs rows in pairs: the result equals the single-process
run bit for bit (on one torch thread in both). ``napari_tomoml.batch`` runs a single input this
way when it is given workers or a scheduler (or ``chunk_rows``).

>>> chunk_bounds(10, 4)
[(0, 4), (4, 8), (8, 10)]
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled, InputError
from ..progress import Progress, run_to_end
from .registry import get_task

#: tasks whose one input can be split into slabs of rows
CHUNKED_TASKS = ("reconstruct", "denoise")
#: a slab's result (held by its worker until saved) is kept below this many bytes by default
PART_BYTES = 256 << 20


def chunk_bounds(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each slab; every boundary is even (the Fourier FBP pairs rows)."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise InputError(f"chunk_rows={chunk_rows!r}: give a whole number of rows, at least 1")
    step = int(chunk_rows) + int(chunk_rows) % 2
    return [(a, min(n_rows, a + step)) for a in range(0, n_rows, step)]


def parts_folder(output: str | Path) -> Path:
    """Where the finished slabs of ``output`` wait to be assembled (hidden: batches skip it)."""
    output = Path(output)
    return output.with_name(f".{output.name}.parts")


# ---------------------------------------------------------------------------- per task
def _plan(task: str, source: Path, options: dict[str, Any]) -> tuple[int, int, dict[str, Any]]:
    """(rows, bytes of one result row, what every slab must share), without computing the result."""
    if task == "reconstruct":
        from ..io import load_scan
        from .reconstruct import find_center_steps
        from .registry import _center

        scan = load_scan(source)
        center = _center(options["center"])
        if center is None and scan.metadata.get("center") is not None:
            center = float(scan.metadata["center"])  # the file's own value, as a single-process run
        n_rows, n_det = scan.shape[1], scan.shape[2]
        if center == "auto":  # the single-process run finds it on the middle rows of the whole scan
            center = run_to_end(find_center_steps(scan.projections, n_rows // 2, scan.theta,
                                                  {"flats": scan.flats, "darks": scan.darks},
                                                  not options["line_integrals"]))
        return n_rows, 4 * n_det * n_det, {"center": None if center is None else float(center)}
    from ..inference.inputs import check_slices
    from ..io.volume import read_volume
    from ..models.normalization import fit_normalization
    from ..models.store import load_model

    volume = check_slices(read_volume(source).data, what="volume", purpose="denoise")
    affine = fit_normalization(load_model(options["model"], device="cpu").normalization, volume)
    shape = volume.shape
    return shape[0], 4 * int(np.prod(shape[1:])), {
        "normalization": {"kind": "affine", "offset": float(affine.offset), "scale": float(affine.scale)}}


def _slab_steps(task: str, source: Path, options: dict[str, Any], shared: dict[str, Any], a: int, b: int):
    """Rows ``a:b`` of the task's result, as the whole-file run computes them; returns (array, metadata)."""
    if task == "reconstruct":
        from ..io import load_scan
        from .reconstruct import reconstruct_scan_steps
        from .registry import ITERATIONS, memory_budget

        scan = load_scan(source)
        algo = {"algorithm": options["algorithm"], "filter_name": options["filter_name"], "device": options["device"]}
        if options["algorithm"] != "fbp":
            algo["n_iter"] = options["n_iter"] or ITERATIONS[options["algorithm"]]
        volume, meta = yield from reconstruct_scan_steps(
            scan.projections, scan.theta, None, metadata={"flats": scan.flats, "darks": scan.darks},
            raw=not options["line_integrals"], rows=slice(a, b), center=shared["center"],
            max_memory=memory_budget(options["memory"]), **algo)
        return volume, meta
    from ..device import resolve_device
    from ..io.volume import read_volume
    from ..models.store import load_model
    from .denoise import denoise_steps

    volume = read_volume(source).data
    loaded = load_model(options["model"], device=resolve_device(options["device"]))
    loaded.card = dict(loaded.card, normalization=shared["normalization"])  # the whole volume's
    half = int(getattr(loaded.module, "depth", 1)) // 2  # neighbours each slice is denoised with
    lo, hi = max(0, a - half), min(volume.shape[0], b + half)
    rest = {k: v for k, v in options.items() if k not in ("model", "format")}
    out, meta = yield from denoise_steps(np.asarray(volume[lo:hi], np.float32), loaded, **rest)
    return out[a - lo : b - lo], meta


# ---------------------------------------------------------------------------- one slab (a worker)
def run_cancellable(steps: Generator[Progress, None, Any], cancel: str | None = None, every: float = 0.1) -> Any:
    """Run ``steps`` to the end; with ``cancel`` (a ``distributed.Event`` name) stop at the first
    progress step after the event is set: the generator is closed (its atomic outputs removed)
    and :class:`Cancelled` raised."""
    if cancel is None:
        return run_to_end(steps)
    from distributed import Event

    event, checked = Event(cancel), time.monotonic()
    if event.is_set():  # cancelled before it started
        steps.close()
        raise Cancelled("cancelled")
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
        if time.monotonic() - checked >= every:  # one scheduler round trip per check
            checked = time.monotonic()
            if event.is_set():
                steps.close()
                raise Cancelled("cancelled")


def _part_path(parts: Path, a: int, b: int) -> Path:
    return parts / f"rows-{a:07d}-{b:07d}.npy"


def _part_steps(task, source, parts, options, shared, a, b):
    from .._writer import jsonable
    from ..io.writers import atomic_output

    part = _part_path(parts, a, b)
    if part.exists():
        return "skipped"
    array, meta = yield from _slab_steps(task, source, options, shared, a, b)
    with atomic_output(part.with_suffix(".json"), overwrite=True) as tmp:
        tmp.write_text(json.dumps(jsonable(meta)))
    with atomic_output(part, overwrite=True) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array, dtype=np.float32))
    return "ok"


def _run_part(task, source, parts, options, shared, a, b, threads, cancel) -> str:
    """One slab on a Dask worker, torch on this worker's share of the cores; cancellable."""
    from .batch import _set_threads

    _set_threads(threads)
    try:
        return run_cancellable(_part_steps(task, source, parts, options, shared, a, b), cancel)
    except Cancelled:
        return "cancelled"


# ---------------------------------------------------------------------------- the file
def chunked_steps(
    task: str,
    source: str | Path,
    output: str | Path,
    *,
    options: dict[str, Any] | None = None,
    chunk_rows: int | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = True,
) -> Generator[Progress, None, dict[str, Any]]:
    """Compute ``task`` on one file slab by slab (in this process, or as Dask tasks with
    ``workers``/``scheduler`` as :func:`~napari_tomoml.batch`); returns the output's metadata.

    ``chunk_rows``: rows per slab (made even); by default about four slabs per worker, each
    result at most :data:`PART_BYTES`. ``resume`` keeps finished slabs of an interrupted run
    (same options) and an existing output; ``resume=False`` computes everything again.
    Closing the generator cancels: running slabs stop at their next progress step.

    >>> from napari_tomoml.progress import run_to_end
    >>> meta = run_to_end(chunked_steps("reconstruct", "big.h5", "big.zarr", workers=4))  # doctest: +SKIP
    """
    from ..io.writers import check_output
    from .batch import dask_client, parse_scheduler

    spec = get_task(task)
    if spec.name not in CHUNKED_TASKS:
        raise InputError(f"task {spec.name!r} runs a file as a whole; slabs of rows: {', '.join(CHUNKED_TASKS)}")
    opts = spec.resolve(options)
    source, output = Path(source).expanduser(), Path(output).expanduser()
    check_output(output, overwrite=True, inputs=[source])
    target = parse_scheduler(scheduler, workers)
    parts = parts_folder(output)
    if output.exists() and resume:
        return {"skipped": True}
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")

    yield Progress(0, 1, "reading the file's shape" + (", finding the centre" if opts.get("center") == "auto" else ""))
    n_rows, row_bytes, shared = _plan(spec.name, source, opts)
    plan = {"task": spec.name, "source": str(source), "options": opts, "shared": shared, "rows": n_rows}
    if parts.exists() and (not resume or _read_plan(parts) != json.loads(json.dumps(plan, default=str))):
        shutil.rmtree(parts)  # another run's (other options) or not to be resumed
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "plan.json").write_text(json.dumps(plan, default=str))

    with dask_client(target) as (client, threads, n_workers):
        if chunk_rows is None:
            chunk_rows = max(1, min(-(-n_rows // (4 * n_workers)), PART_BYTES // max(1, row_bytes)))
        bounds = chunk_bounds(n_rows, chunk_rows)
        n = len(bounds)
        if client is None:
            for i, (a, b) in enumerate(bounds):
                steps = _part_steps(spec.name, source, parts, opts, shared, a, b)
                while True:
                    try:
                        p = next(steps)
                    except StopIteration as stop:
                        yield Progress(i + 1, n, f"slab {a}-{b - 1}: {stop.value}")
                        break
                    yield Progress(i, n, f"slab {a}-{b - 1}: {p.message}")
        else:
            yield from _dask_parts(client, threads, spec.name, source, parts, opts, shared, bounds)
    yield Progress(n, n, "assembling the output")
    return _assemble(output, source, parts, bounds, n_rows, overwrite=not resume)


def _read_plan(parts: Path) -> Any:
    try:
        return json.loads((parts / "plan.json").read_text())
    except (OSError, ValueError):
        return None


def _dask_parts(client, threads, task, source, parts, opts, shared, bounds):
    from distributed import Event, wait

    from .batch import as_finished

    cancel = f"tomoml-cancel-{time.time_ns()}"
    event = Event(cancel, client=client)
    futures = {client.submit(_run_part, task, source, parts, opts, shared, a, b, threads, cancel, pure=False,
                             key=f"{cancel}-{a}"): (a, b) for a, b in bounds}
    done = 0
    try:
        for future in as_finished(futures):
            if future is None:
                yield Progress(done, len(bounds), "running")
                continue
            a, b = futures[future]
            done += 1
            yield Progress(done, len(bounds), f"slab {a}-{b - 1}: {future.result()}")
    finally:
        if done < len(bounds):  # cancelled or failed: running slabs stop at their next step
            event.set()  # (and leave no partial part); the cluster closes only after that
            wait(list(futures), timeout=60)


def _assemble(output: Path, source: Path, parts: Path, bounds, n_rows: int, overwrite: bool) -> dict[str, Any]:
    from .._writer import jsonable
    from ..io.writers import open_volume

    first = _part_path(parts, *bounds[0])
    meta = json.loads(first.with_suffix(".json").read_text())
    if isinstance(meta.get("parameters"), dict) and "rows" in meta["parameters"]:
        meta["parameters"]["rows"] = [0, n_rows]
    meta = dict(meta, source=str(source), chunks=[list(ab) for ab in bounds])
    shape = (n_rows, *np.load(first, mmap_mode="r").shape[1:])
    with open_volume(output, shape, overwrite=overwrite, inputs=[source], metadata=jsonable(meta)) as sink:
        for a, b in bounds:
            sink[a:b] = np.load(_part_path(parts, a, b), mmap_mode="r")
    shutil.rmtree(parts)
    return meta
