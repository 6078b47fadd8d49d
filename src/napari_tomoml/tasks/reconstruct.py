"""Reconstruct a volume from projections: the one task behind the widget, the CLI and scripts.

>>> import numpy as np
>>> from napari_tomoml.recon import project
>>> from napari_tomoml.sim.phantom import shepp_logan_3d
>>> theta = np.linspace(0, np.pi, 90, endpoint=False)
>>> proj = project(shepp_logan_3d(32, 4), theta, device="cpu")
>>> volume, meta = reconstruct(proj, theta, algorithm="fbp", device="cpu")
>>> volume.shape, meta["algorithm"], meta["center"]
((4, 32, 32), 'fbp', 16.0)
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ..progress import Progress, ProgressArg, run_to_end
from ..recon import _validate as v
from ..recon.fbp import BACKENDS, fbp_steps
from ..recon.filters import filter_response
from ..recon.iterative import cgls_steps, sirt_steps, solve_steps
from .registry import ITERATIONS as DEFAULT_ITERATIONS  # declared once, with the task's parameters

ALGORITHMS = ("fbp", "sirt", "cgls", "tv")
FIND_CENTER_ROWS = 5  # rows around the chosen row that find_center_steps averages over


def _row_range(rows, n_rows: int) -> tuple[int, int]:
    if rows is None:
        return 0, n_rows
    start, stop = (rows.start, rows.stop) if isinstance(rows, slice) else rows
    start = 0 if start is None else int(start)
    stop = n_rows if stop is None else int(stop)
    if not 0 <= start < stop <= n_rows:
        raise v.InputError(f"rows={rows!r} must select rows within 0..{n_rows} (start < stop)")
    return start, stop


def reconstruct_steps(
    projections,
    theta,
    *,
    algorithm: str = "fbp",
    center: float | None = None,
    filter_name: str = "ramp",
    n_iter: int | None = None,
    tv: float = 0.01,
    rows=None,
    device="auto",
    backend: str = "torch",
    chunk_rows: int | None = None,
    nonneg: bool = True,
    support=None,
    n: int | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """Reconstruct, yielding :class:`Progress` per batch of rows (FBP) or per iteration.

    ``projections`` are line integrals ``(angles, rows, cols)`` (or one sinogram); ``theta`` in
    radians; ``algorithm`` fbp, sirt, cgls or tv (:func:`~napari_tomoml.recon.solve` with total
    variation ``tv``); ``rows`` a slice or ``(start, stop)`` of detector rows; ``chunk_rows`` rows
    per batch (default: by memory for FBP, 8 for iterative methods); ``nonneg`` and ``support``
    (an ``(n, n)`` mask, values outside forced to zero) constrain SIRT (``nonneg``) and tv; ``n``
    the output size (default: the detector width; the grid stays centred on the axis, so a
    smaller ``n`` is a centred region of interest). Returns ``(volume, metadata)``, volume
    ``(rows, n, n)`` float32 numpy.

    >>> from napari_tomoml.progress import run_to_end
    >>> volume, meta = run_to_end(reconstruct_steps(proj, theta, algorithm="sirt"))   # doctest: +SKIP
    """
    if algorithm not in ALGORITHMS:
        raise v.InputError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    if backend not in BACKENDS:
        raise v.InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if algorithm != "fbp" and backend != "torch":
        raise v.InputError(f"the {backend!r} backend only does FBP; use backend='torch' for {algorithm}")
    proj, _ = v.as_stack(projections, "projections")
    n_angles, n_rows, n_det = proj.shape
    theta = v.as_theta(theta, n_angles)
    center = v.as_center(center, n_det)
    start, stop = _row_range(rows, n_rows)
    filter_response(filter_name, 64)  # an unknown filter fails now, not after the first batch
    n_iter = DEFAULT_ITERATIONS.get(algorithm) if n_iter is None else n_iter
    selected = proj[:, start:stop]

    if algorithm == "fbp":
        volume = yield from fbp_steps(
            selected, theta, center, filter_name, device=device, backend=backend, chunk=chunk_rows, n=n
        )
    else:
        volume = yield from _iterative_steps(
            selected, theta, center, algorithm, n_iter, tv, device, chunk_rows or 8,
            nonneg=nonneg, support=support, n=n,
        )

    from .. import __version__

    parameters = {
        "algorithm": algorithm,
        "center": center,
        "rows": [start, stop],
        "device": str(device),
        "backend": backend,
    }
    if algorithm == "fbp":
        parameters["filter_name"] = filter_name
    else:
        parameters["n_iter"] = int(n_iter)
    if algorithm == "tv":
        parameters["tv"] = float(tv)
    if algorithm in ("sirt", "tv"):
        parameters["nonneg"] = bool(nonneg)
    if support is not None and algorithm == "tv":
        parameters["support"] = True
    if n is not None:
        parameters["n"] = int(n)
    metadata = {
        "task": "reconstruct",
        "algorithm": algorithm,
        "parameters": parameters,
        "center": center,
        "theta_range_deg": [float(np.degrees(theta.min())), float(np.degrees(theta.max()))],
        "n_angles": int(n_angles),
        "version": __version__,
    }
    return np.asarray(volume, dtype=np.float32), metadata


def _iterative_steps(proj, theta, center, algorithm, n_iter, tv, device, chunk_rows, *, nonneg=True, support=None, n=None):
    """Run an iterative method over batches of rows, re-counting its progress over the whole volume."""
    n_rows = proj.shape[1]
    starts = range(0, n_rows, chunk_rows)
    total = len(starts) * n_iter
    pieces = []
    for b, start in enumerate(starts):
        rows = np.asarray(proj[:, start : start + chunk_rows])
        if algorithm == "sirt":
            steps = sirt_steps(rows, theta, center=center, n_iter=n_iter, device=device, nonneg=nonneg, n=n)
        elif algorithm == "cgls":
            steps = cgls_steps(rows, theta, center=center, n_iter=n_iter, device=device, n=n)
        else:
            steps = solve_steps(
                rows, theta, center=center, tv=tv, n_iter=n_iter, device=device, nonneg=nonneg, support=support, n=n
            )
        while True:
            try:
                p = next(steps)
            except StopIteration as stop:
                pieces.append(stop.value)
                break
            yield Progress(
                b * n_iter + p.done, total, f"{p.message} rows {start}-{start + rows.shape[1] - 1}", p.data
            )
    return np.concatenate(pieces, axis=0)


def reconstruct(
    projections,
    theta,
    *,
    algorithm: str = "fbp",
    center: float | None = None,
    filter_name: str = "ramp",
    n_iter: int | None = None,
    tv: float = 0.01,
    rows=None,
    device="auto",
    backend: str = "torch",
    chunk_rows: int | None = None,
    progress: ProgressArg = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reconstruct a volume ``(rows, n, n)`` and its provenance metadata; see :func:`reconstruct_steps`.

    >>> import numpy as np
    >>> volume, meta = reconstruct(np.zeros((30, 2, 16), np.float32), np.linspace(0, np.pi, 30), device="cpu")
    >>> volume.shape, meta["task"]
    ((2, 16, 16), 'reconstruct')
    """
    return run_to_end(
        reconstruct_steps(
            projections,
            theta,
            algorithm=algorithm,
            center=center,
            filter_name=filter_name,
            n_iter=n_iter,
            tv=tv,
            rows=rows,
            device=device,
            backend=backend,
            chunk_rows=chunk_rows,
        ),
        progress,
    )


# Interactive pieces (the Reconstruct widget's workers). ``projections`` may be raw counts of a
# napari layer: with ``raw=True`` the rows read are normalised with ``metadata["flats"/"darks"]``.
def read_line_integrals(projections, rows: slice, metadata: dict[str, Any], raw: bool) -> np.ndarray:
    """Rows ``rows`` of ``projections`` as float32 line integrals, normalising raw counts.

    ``metadata`` gives ``flats``, ``darks`` and optionally ``zinger_threshold`` for the normalising.

    >>> read_line_integrals(np.ones((3, 4, 5)), slice(1, 2), {}, raw=False).shape
    (3, 1, 5)
    """
    proj = projections[:, rows, :]
    if not raw:
        return np.asarray(proj, dtype=np.float32)
    from ..prep import normalize

    flats, darks = metadata.get("flats"), metadata.get("darks")
    flats = None if flats is None else flats[:, rows, :]
    darks = None if darks is None else darks[:, rows, :]
    return normalize(np.asarray(proj), flats, darks, zinger_threshold=metadata.get("zinger_threshold"))


def preview_slice(projections, row, theta, center, filter_name, metadata, raw) -> np.ndarray:
    """FBP of one detector row on the CPU: the cheap live preview ``(n, n)``.

    >>> preview_slice(np.zeros((30, 2, 16), np.float32), 0, np.linspace(0, np.pi, 30), None, "ramp", {}, False).shape
    (16, 16)
    """
    from ..recon.fbp import fbp

    sino = read_line_integrals(projections, slice(row, row + 1), metadata, raw)
    return np.asarray(fbp(sino, theta, center=center, filter_name=filter_name, device="cpu"))[0]


def find_center_steps(projections, row, theta, metadata, raw) -> Generator[Progress, None, float]:
    """The rotation centre from :data:`FIND_CENTER_ROWS` rows around ``row``; yields progress."""
    from ..recon.center import find_center

    yield Progress(0, 2, "reading rows")
    n_rows = projections.shape[1]
    r0 = max(0, min(row - FIND_CENTER_ROWS // 2, n_rows - FIND_CENTER_ROWS))
    sino = read_line_integrals(projections, slice(r0, min(n_rows, r0 + FIND_CENTER_ROWS)), metadata, raw)
    yield Progress(1, 2, "finding the rotation centre")
    center = float(find_center(sino, theta, row=row - r0))
    yield Progress(2, 2, f"centre {center:.2f} px")
    return center


MAX_CENTER_CHECK_SLICES = 101  # a centre check is for the eye: more slices only cost memory and time
CENTER_CHECK_BATCH = 8  # most trial centres per FBP batch; cancel takes effect between batches
CENTER_CHECK_BATCH_PIXELS = 1 << 20  # slice pixels per batch: two 640² slices (well under 1 s on an idle CPU)


def plan_center_check(
    center: float, half_range: float, step: float, n_det: int, max_slices: int = MAX_CENTER_CHECK_SLICES
) -> tuple[np.ndarray, list[str]]:
    """Trial centres ``center ± half_range`` every ``step`` px, bounded; returns ``(centers, warnings)``.

    The range is clipped to the detector and the step widened so that at most ``max_slices``
    slices are made; each change is described in ``warnings`` (numbers rounded).

    >>> centers, warnings = plan_center_check(320.0, 50, 0.1, 640)
    >>> len(centers), round(float(centers[1] - centers[0]), 2)
    (101, 1.0)
    >>> warnings[0]
    'centre check ±50 px at 0.1 px would make 1001 slices; step widened to 1 px (101 slices)'
    """
    if not (step > 0 and half_range >= 0):
        raise v.InputError(f"centre check needs a step > 0 px and a range ≥ 0 px; got ±{half_range:g} px at {step:g} px")
    warnings: list[str] = []
    lo, hi = center - half_range, center + half_range
    if lo < 0 or hi > n_det:
        lo, hi = max(lo, 0.0), min(hi, float(n_det))
        if hi < lo:
            raise v.InputError(f"centre {center:.2f} px lies outside the detector (0 to {n_det} px)")
        warnings.append(f"centre check range clipped to the detector: {lo:.2f} to {hi:.2f} px")
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    if n > max_slices:
        new_step = float(np.round((hi - lo) / (max_slices - 1), 3))
        while int(np.floor((hi - lo) / new_step + 1e-9)) + 1 > max_slices:
            new_step += 0.001
        warnings.append(
            f"centre check ±{half_range:g} px at {step:g} px would make {n} slices; "
            f"step widened to {new_step:g} px ({int(np.floor((hi - lo) / new_step + 1e-9)) + 1} slices)"
        )
        step = new_step
    centers = np.arange(int(np.floor((hi - lo) / step + 1e-9)) + 1) * step + lo
    return centers, warnings


def center_check_bytes(n_centers: int, n_det: int) -> int:
    """Memory a centre-check stack of ``n_centers`` float32 ``n_det``² slices takes."""
    return int(n_centers) * int(n_det) ** 2 * 4


def center_check_steps(projections, row, theta, centers, filter_name, metadata, raw):
    """Slices of row ``row`` reconstructed at each trial centre: ``(stack, centers)``.

    Made a few centres at a time (at most :data:`CENTER_CHECK_BATCH`, fewer for big slices, so
    a batch takes well under a second) with a progress step after each batch, where a worker can
    cancel it; more than :data:`MAX_CENTER_CHECK_SLICES` centres are refused (use
    :func:`plan_center_check`).
    """
    from ..recon.center import center_stack

    centers = np.atleast_1d(np.asarray(centers, dtype=np.float64))
    if len(centers) > MAX_CENTER_CHECK_SLICES:
        raise v.InputError(
            f"a centre check of {len(centers)} slices is too many (at most {MAX_CENTER_CHECK_SLICES}): "
            "widen the step or narrow the range"
        )
    n_det = projections.shape[-1]
    batch = max(1, min(CENTER_CHECK_BATCH, CENTER_CHECK_BATCH_PIXELS // (n_det * n_det)))
    batches = range(0, len(centers), batch)
    total = len(batches) + 1
    yield Progress(0, total, "reading the row")
    sino = read_line_integrals(projections, slice(row, row + 1), metadata, raw)
    stack = np.empty((len(centers), sino.shape[-1], sino.shape[-1]), np.float32)
    for i, start in enumerate(batches):
        yield Progress(i + 1, total, f"trial centres {start + 1}-{min(start + batch, len(centers))} of {len(centers)}")
        part = centers[start : start + batch]
        stack[start : start + len(part)] = np.asarray(center_stack(sino, theta, part, row=0, filter_name=filter_name))
    yield Progress(total, total, "centre check ready")
    return stack, centers


def prepare_steps(
    projections,
    rows: slice,
    theta,
    metadata: dict[str, Any],
    raw: bool,
    center: float | None,
    *,
    phase: dict[str, float] | None = None,
    rings: bool = False,
    stitch_360: bool = False,
    pad: int = 0,
):
    """Line integrals of ``rows`` made ready for a reconstructor, as a beamline pipeline does.

    In order: Paganin phase retrieval (``phase``: the keyword arguments of
    :func:`~napari_tomoml.recon.phase.retrieve_phase`; rows around ``rows`` are read too, so the
    2-D filter sees its context), stripe (ring) removal, a 360° off-centre-axis scan stitched to
    180° (:func:`~napari_tomoml.recon.stitch.stitch_360`), ``pad`` detector columns of edge
    values on each side (against truncation artefacts in local scans). Returns
    ``(projections, theta, center, n, steps)``: ``n`` the output size that keeps the unpadded
    field of view, ``steps`` what was done (for provenance).
    """
    n_rows = projections.shape[1]
    start, stop = _row_range(rows, n_rows)
    theta = np.asarray(theta, dtype=np.float64)
    done: dict[str, Any] = {}
    if phase:
        from ..recon.phase import margin_px, retrieve_phase_steps

        m = margin_px(**phase)
        r0, r1 = max(0, start - m), min(n_rows, stop + m)
        yield Progress(0, 1, "reading rows for phase retrieval")
        li = read_line_integrals(projections, slice(r0, r1), metadata, raw)
        proj = yield from retrieve_phase_steps(np.exp(-li), **phase, device="cpu")
        proj = proj[:, start - r0 : stop - r0]
        done["phase"] = {"method": "paganin", **{k: float(v) for k, v in phase.items()}}
    else:
        proj = read_line_integrals(projections, slice(start, stop), metadata, raw)
    center = v.as_center(center, proj.shape[-1])
    if rings:
        from ..recon.rings import remove_stripes

        yield Progress(0, 1, "removing stripes (rings)")
        proj = remove_stripes(proj)
        done["rings"] = "sorting"
    if stitch_360:
        from ..recon.stitch import stitch_360 as stitch

        yield Progress(0, 1, "stitching 360° to 180°")
        proj, theta, center = stitch(proj, theta, center)
        done["stitch_360"] = True
    n = proj.shape[-1]
    if pad:
        pad = int(pad)
        proj = np.pad(proj, ((0, 0), (0, 0), (pad, pad)), mode="edge")
        center += pad
        done["pad"] = pad
    return proj, theta, center, n, done


def reconstruct_raw_steps(projections, rows: slice, theta, metadata, raw, options: dict[str, Any]):
    """Read rows ``rows`` (normalising raw counts), then :func:`reconstruct_steps` with ``options``.

    ``options["prepare"]`` (optional) holds the keyword arguments of :func:`prepare_steps`.
    """
    yield Progress(0, 1, "reading and normalising" if raw else "reading projections")
    options = dict(options)
    prepare = options.pop("prepare", None)
    if not prepare:
        proj = read_line_integrals(projections, rows, metadata, raw)
        return (yield from reconstruct_steps(proj, theta, **options))
    proj, theta, center, n, done = yield from prepare_steps(
        projections, rows, theta, metadata, raw, options.pop("center", None), **prepare
    )
    options.setdefault("n", n)
    volume, meta = yield from reconstruct_steps(proj, theta, center=center, **options)
    meta["parameters"]["rows"] = list(_row_range(rows, projections.shape[1]))
    meta["parameters"]["prepare"] = done
    return volume, meta


# Bounded memory: a scan larger than memory is reconstructed slab by slab of detector rows, each
# slab read, normalised, prepared, reconstructed and handed to ``out`` before the next is read.
#: Default of ``max_memory``: what a whole reconstruction may hold, the Python process included.
DEFAULT_MAX_MEMORY = 1 << 30


def parse_memory(text: str | int | None) -> int | None:
    """``"1GiB"``, ``"512 MB"``, ``"2g"`` or a number of bytes → bytes; ``None`` stays ``None``.

    >>> parse_memory("1GiB"), parse_memory("512MB"), parse_memory(4096)
    (1073741824, 536870912, 4096)
    """
    import re

    if text is None or isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise v.InputError(f"memory {text!r}: give a size like 1GiB, 512MB or 2G")
    scale = 1024 ** "kmgt".find(match.group(2).lower()) * 1024 if match.group(2) else 1
    return int(float(match.group(1)) * scale)


def slab_rows(n_angles: int, n_det: int, n: int, itemsize: int, max_memory: int, n_rows: int) -> int:
    """Detector rows per slab so that one slab's working set fits in ``max_memory`` bytes.

    Per row: the raw frames' row, its float32 copies through normalising and filtering (about 7),
    and the reconstructed slice with the FFT grids of gridrec (about 16 slices of ``n x n``).
    ``max_memory`` is what the task may add to the process; the CLI's ``--memory`` (a peak for
    the whole command) subtracts what the process already holds before it calls this. Counting
    the caller's memory here would fail in a long napari session or a test run that holds GiBs.

    >>> slab_rows(720, 1024, 1024, 2, 1 << 30, 768) >= 1
    True
    """
    per_row = n_angles * n_det * (itemsize + 28) + 64 * n * n
    budget = int(max_memory) - (64 << 20)  # headroom for allocator slack
    if budget < per_row:
        raise v.InputError(
            f"a memory limit of {max_memory / 2**30:.2f} GiB is too small: one detector row needs "
            f"{(per_row + (64 << 20)) / 2**20:.0f} MiB; raise it"
        )
    rows = max(1, min(n_rows, budget // per_row))
    # even, so that the Fourier FBP pairs the same rows whatever the limit: the same result bit for bit
    return rows if rows == n_rows or rows < 2 else rows - rows % 2


def reconstruct_scan_steps(
    projections,
    theta,
    out=None,
    *,
    metadata: dict[str, Any] | None = None,
    raw: bool = True,
    rows=None,
    center: float | str | None = None,
    prepare: dict[str, Any] | None = None,
    max_memory: int | str | None = DEFAULT_MAX_MEMORY,
    **options: Any,
) -> Generator[Progress, None, tuple[Any, dict[str, Any]]]:
    """Reconstruct a scan of any size in bounded memory, slab by slab of detector rows.

    ``projections`` (possibly lazy: dask, h5py, zarr, memmap) are raw counts normalised with
    ``metadata["flats"/"darks"/"zinger_threshold"]`` (``raw=True``) or line integrals. Each slab
    goes through :func:`prepare_steps` (``prepare``: phase, rings, stitch_360, pad) and
    :func:`reconstruct_steps` (``options``: algorithm, filter_name, n_iter, device, ...) and is
    written to ``out`` before the next slab is read, so memory stays under ``max_memory`` (bytes
    or ``"1GiB"``; ``None``: no limit) whatever the scan's size. ``out(shape, metadata)`` opens
    the destination (e.g. :func:`napari_tomoml.io.writers.open_volume`) once the volume's shape
    and provenance are known and returns an array-like filled by slabs; without ``out`` the
    volume is returned in memory. ``center="auto"`` finds the centre on rows at the middle.

    >>> from napari_tomoml.io.writers import open_volume
    >>> with open_volume("rec.zarr", ...) as sink: ...                  # doctest: +SKIP
    >>> run_to_end(reconstruct_scan_steps(scan.projections, scan.theta, lambda shape, meta: sink,
    ...            metadata={"flats": scan.flats, "darks": scan.darks}, max_memory="1GiB"))  # doctest: +SKIP
    """
    metadata = dict(metadata or {})
    prepare = dict(prepare or {})
    n_angles, n_rows, n_det = (int(x) for x in projections.shape)
    start, stop = _row_range(rows, n_rows)
    if center == "auto":
        center = yield from find_center_steps(projections, (start + stop) // 2, theta, metadata, raw)
    elif center is not None:
        center = v.as_center(center, n_det)
    max_memory = parse_memory(max_memory)
    n_out = options.get("n") or n_det
    width = n_det + 2 * int(prepare.get("pad", 0))
    step = (stop - start) if max_memory is None else slab_rows(
        n_angles, width * (2 if prepare.get("stitch_360") else 1), n_out * (2 if prepare.get("stitch_360") else 1),
        np.dtype(projections.dtype).itemsize, max_memory, stop - start)
    if options.get("algorithm", "fbp") == "fbp":
        options.setdefault("chunk_rows", step)  # FBP's own batches stay within the slab
    sink = meta = None
    total = stop - start
    for a in range(start, stop, step):
        b = min(stop, a + step)
        slab = yield from _forward(
            prepare_steps(projections, slice(a, b), theta, metadata, raw, center, **prepare),
            a - start, total, f"rows {a}-{b - 1}: preparing",
        )
        proj, th, c, n, done = slab
        opts = {"n": n, **options}
        volume, slab_meta = yield from _forward(
            reconstruct_steps(proj, th, center=c, **opts), a - start, total, f"rows {a}-{b - 1}: reconstructing"
        )
        del proj
        if sink is None:
            meta = slab_meta
            meta["parameters"]["rows"] = [start, stop]
            meta["parameters"]["prepare"] = done
            meta["parameters"]["max_memory"] = max_memory
            meta["parameters"]["slab_rows"] = step
            shape = (total,) + tuple(volume.shape[1:])
            if out is None:
                v.check_memory(4 * int(np.prod(shape)), f"a volume of {' x '.join(map(str, shape))}",
                               "write it to a file slab by slab (tomoml reconstruct, or pass out=)")
                sink = np.empty(shape, np.float32)
            else:
                sink = out(shape, meta)
        sink[a - start : b - start] = volume
        del volume
        yield Progress(b - start, total, f"reconstructed rows {start}-{b - 1}")
    return sink, meta


def _forward(steps, done: int, total: int, message: str):
    """Run a nested task, reporting its progress as part of the slab loop's (rows done of total)."""
    while True:
        try:
            p = next(steps)
        except StopIteration as stop:
            return stop.value
        yield Progress(done, total, f"{message} ({p.message})", p.data)
