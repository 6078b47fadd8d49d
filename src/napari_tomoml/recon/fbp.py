"""Filtered back-projection: the fast, direct reconstruction.

The torch engine filters each projection row in Fourier space (zero-padded so nothing wraps),
weights each angle by its share of the half turn (so 180°, 360° and uneven angle sets all come
out right), and then either grids the filtered spectra onto a Cartesian 2-D spectrum and inverts
it with one FFT (``method="gridrec"``, :mod:`napari_tomoml.recon.gridrec`: 9-13x faster than
the back-projection at 512-2048 pixels, benchmarks/results.md) or back-projects many slices at once with the sparse back-projector of
:mod:`napari_tomoml.recon.geometry` (``method="backprojection"``, the exact transpose of
:func:`~napari_tomoml.recon.project`). ASTRA (2-D CPU) and tomopy can be used instead where
they are installed, as peers to compare with.

>>> import numpy as np
>>> from napari_tomoml.recon import project
>>> from napari_tomoml.sim.phantom import shepp_logan_3d
>>> vol = shepp_logan_3d(64, 2)
>>> theta = np.linspace(0, np.pi, 128, endpoint=False)
>>> rec = fbp(project(vol, theta, device="cpu"), theta, device="cpu")
>>> rec.shape, bool(np.abs(rec - vol).mean() < 0.05)
((2, 64, 64), True)
"""

from __future__ import annotations

import importlib
from collections.abc import Generator

import numpy as np
import torch
from scipy import ndimage

from ..errors import InputError, TomomlError
from ..progress import Progress, run_to_end
from . import _validate as v
from ._workers import run_serial
from .filters import filter_response, padded_length
from .geometry import Geometry, SparseProjector, angular_weights, make_geometry
from .gridrec import grid_size, gridrec
from .projector import backproject_tensor

BACKENDS = ("torch", "astra", "tomopy")
METHODS = ("auto", "gridrec", "backprojection")
# Bytes of working memory for one batch of slices (filtered projections + output, ~2 copies).
_BATCH_BYTES = 1 << 30
# Complex values per FFT block, bounds the filtering memory independently of the batch.
_FFT_BLOCK = 1 << 23
# Rows of a batch up to which its FBP runs on one thread.
_FEW_ROWS = 4


def circle_mask(n: int) -> np.ndarray:
    """Pixels whose centre lies inside the circle inscribed in the ``n x n`` slice.

    >>> int(circle_mask(4).sum())
    12
    """
    c = np.arange(n) + 0.5 - n / 2
    return (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2) ** 2


def filter_projections(
    projections: torch.Tensor,
    theta: np.ndarray,
    filter_name: str = "ramp",
    *,
    cutoff: float = 1.0,
    order: int = 2,
) -> torch.Tensor:
    """Ramp-filter and angle-weight ``(angles, rows, cols)`` so a back-projection is the FBP.

    >>> import torch, numpy as np
    >>> filter_projections(torch.ones(4, 1, 8), np.linspace(0, np.pi, 4, endpoint=False)).shape
    torch.Size([4, 1, 8])
    """
    n_angles, _, n_det = projections.shape
    n_pad = padded_length(n_det)
    response = torch.as_tensor(
        filter_response(filter_name, n_pad, cutoff=cutoff, order=order), dtype=projections.dtype
    ).to(projections.device)
    weights = torch.as_tensor(angular_weights(theta), dtype=projections.dtype).to(projections.device)
    out = torch.empty_like(projections)
    per_block = max(1, _FFT_BLOCK // (projections.shape[1] * n_pad))
    for a in range(0, n_angles, per_block):
        block = projections[a : a + per_block]
        spectrum = torch.fft.rfft(block, n=n_pad, dim=-1) * response
        filtered = torch.fft.irfft(spectrum, n=n_pad, dim=-1)[..., :n_det]
        out[a : a + per_block] = filtered * weights[a : a + per_block, None, None]
    return out


def _rows_per_batch(geom: Geometry, n_rows: int) -> int:
    """Slices per back-projection call: many, because each call walks the whole sparse matrix.

    Where the matrix fits the cache a few rows suffice (it is built once); otherwise it is rebuilt
    per call, so the batch grows to what the memory budget allows.
    """
    per_slice = 4 * 2 * (geom.n_angles * geom.padded_width + geom.n**2)
    fit = max(1, _BATCH_BYTES // per_slice)
    return min(n_rows, 8 if SparseProjector(geom, torch.float32, torch.device("cpu")).cacheable else fit)


def _gridrec_rows_per_batch(n: int, n_angles: int, n_det: int, n_rows: int) -> int:
    """Slices per gridrec call: an even number (slices travel in pairs) within the memory budget."""
    m = grid_size(n)
    per_slice = 4 * (3 * m * m + 2 * n_angles * 2 * n_det)  # half a complex grid + spectrum, ~2 copies
    fit = max(2, _BATCH_BYTES // per_slice)
    return min(n_rows, fit - fit % 2)


def _resolve_method(method: str, proj) -> str:
    if method not in METHODS:
        raise InputError(f"unknown FBP method {method!r}; choose one of {', '.join(METHODS)}")
    if method != "auto":
        return method
    # gradients: the back-projector is the projector's exact transpose and needs no big grids
    needs_grad = isinstance(proj, torch.Tensor) and proj.requires_grad and torch.is_grad_enabled()
    return "backprojection" if needs_grad else "gridrec"


def fbp_steps(
    projections,
    theta,
    center=None,
    filter_name: str = "ramp",
    *,
    circle: bool = False,
    n: int | None = None,
    cutoff: float = 1.0,
    order: int = 2,
    device="auto",
    backend: str = "torch",
    chunk: int | None = None,
    method: str = "auto",
    out=None,
) -> Generator[Progress, None, np.ndarray | torch.Tensor]:
    """:func:`fbp` as a generator yielding :class:`Progress` after each batch of rows."""
    lazy = v.is_lazy(projections)
    # lazy input (dask, h5py, zarr, memmap) is read and checked one batch of rows at a time
    proj, single = (projections, False) if lazy else v.as_stack(projections, "projections")
    n_angles, n_rows, n_det = proj.shape
    theta = v.as_theta(theta, n_angles)
    center = v.as_center(center, n_det)
    n = v.as_size(n, "n", n_det)
    filter_response(filter_name, 64, cutoff=cutoff, order=order)  # checks the names and numbers early
    if backend not in BACKENDS:
        raise InputError(f"unknown FBP backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    method = _resolve_method(method, proj)
    if backend != "torch":
        peer = _fbp_astra if backend == "astra" else _fbp_tomopy
        arr = proj.detach().cpu().numpy() if isinstance(proj, torch.Tensor) else np.asarray(proj, np.float32)
        out = peer(arr, theta, center, filter_name, n, cutoff)
        if circle:
            out *= circle_mask(n)
        yield Progress(n_rows, n_rows, f"FBP ({backend})")
        return out[0] if single else out

    geom = make_geometry(n, n_det, theta, center)
    default_batch = (
        _gridrec_rows_per_batch(n, n_angles, n_det, n_rows)
        if method == "gridrec"
        else _rows_per_batch(geom, n_rows)
    )
    batch = v.as_size(chunk, "chunk", default_batch)
    torch_in = isinstance(proj, torch.Tensor)
    if out is not None:
        if torch_in or tuple(out.shape) != (n_rows, n, n):
            raise InputError(f"out must be a NumPy-like array of shape {(n_rows, n, n)} for numpy projections")
    elif not torch_in:
        v.check_memory(4 * n_rows * n * n, f"an FBP volume of {n_rows} x {n} x {n}",
                       "reconstruct fewer rows at a time (rows=, tomoml reconstruct --rows or --memory), "
                       "or pass out= (e.g. a zarr array or napari_tomoml.io.writers.open_volume)")
        out = np.empty((n_rows, n, n), dtype=np.float32)
    pieces = []
    mask = torch.from_numpy(circle_mask(n)) if circle else None
    for start in range(0, n_rows, batch):
        part = v.as_stack(proj[:, start : start + batch], "projections")[0] if lazy else proj[:, start : start + batch]
        rows, _ = v.to_tensor(part, device)
        del part

        def reconstruct(rows=rows):
            if method == "gridrec":
                rec = gridrec(rows, theta, center, n, filter_name, cutoff=cutoff, order=order)
                return rec if mask is None else rec * mask.to(rec.device)
            filtered = filter_projections(rows, theta, filter_name, cutoff=cutoff, order=order)
            rec = backproject_tensor(filtered, geom, once=batch >= n_rows)
            return rec if mask is None else rec * mask.to(rec.device)

        # a few rows are thousands of small ops, which torch's thread team only slows (_workers)
        few = method != "gridrec" and rows.device.type == "cpu" and rows.shape[1] <= _FEW_ROWS
        rec = run_serial(reconstruct) if few else reconstruct()
        if torch_in:
            pieces.append(rec)
        else:
            out[start : start + rec.shape[0]] = rec.cpu().numpy()
        done = min(start + batch, n_rows)
        yield Progress(done, n_rows, "FBP", {"row": done - 1})
    result = torch.cat(pieces) if torch_in else out
    return result[0] if single else result


def fbp(
    projections,
    theta,
    center=None,
    filter_name: str = "ramp",
    *,
    circle: bool = False,
    n: int | None = None,
    cutoff: float = 1.0,
    order: int = 2,
    device="auto",
    backend: str = "torch",
    chunk: int | None = None,
    method: str = "auto",
    out=None,
):
    """Filtered back-projection of ``(angles, rows, cols)`` → ``(rows, n, n)`` float32.

    A sinogram ``(angles, cols)`` gives one slice. ``theta`` in radians, any set (180°, 360°,
    uneven); ``center`` in detector pixels from the left edge (default ``cols / 2``, tomopy's
    convention); ``filter_name`` one of ramp, shepp-logan, cosine, hamming, hann, parzen,
    butterworth, with ``cutoff`` (fraction of Nyquist) and ``order`` (Butterworth). ``circle``
    zeroes pixels outside the inscribed circle. ``backend`` ``"astra"`` or ``"tomopy"`` uses those
    packages when installed. ``chunk`` sets how many rows go through at once (default: by memory).
    ``method`` (torch backend): ``"gridrec"`` (Fourier gridding, fast), ``"backprojection"``
    (filtered sparse back-projection, the exact transpose of ``project``), or ``"auto"``:
    gridrec, except for a tensor that needs gradients.
    Numpy in → numpy out; a tensor in → a tensor out (differentiable). Lazy projections (dask,
    h5py, zarr, memmap) are read one batch of rows at a time; with ``out`` (an array-like of
    shape ``(rows, n, n)``: a memmap, a zarr array, :func:`~napari_tomoml.io.writers.open_volume`)
    each batch is written there and ``out`` is returned, so memory stays bounded.

    >>> import numpy as np
    >>> sino = np.zeros((180, 65), np.float32); sino[:, 32] = 1.0   # a point on the axis
    >>> rec = fbp(sino, np.linspace(0, np.pi, 180, endpoint=False), device="cpu")
    >>> np.unravel_index(rec.argmax(), rec.shape)
    (np.int64(32), np.int64(32))
    """
    return run_to_end(
        fbp_steps(
            projections,
            theta,
            center,
            filter_name,
            circle=circle,
            n=n,
            cutoff=cutoff,
            order=order,
            device=device,
            backend=backend,
            chunk=chunk,
            method=method,
            out=out,
        )
    )


def _import_peer(module: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TomomlError(
            f"the {module!r} backend is not installed; {extra} or use backend='torch'"
        ) from None


_ASTRA_FILTERS = {
    "ramp": "ram-lak",
    "shepp-logan": "shepp-logan",
    "cosine": "cosine",
    "hamming": "hamming",
    "hann": "hann",
    "parzen": "parzen",
}


def _fbp_astra(proj, theta, center, filter_name, n, cutoff) -> np.ndarray:
    """ASTRA's 2-D CPU FBP, slice by slice (its CUDA routines crash a machine without a GPU).

    ASTRA's standard parallel geometry is ours with the axis at the detector middle, and its FBP
    accepts no other, so an off-centre axis is first moved to the middle by a cubic-spline shift.
    """
    astra = _import_peer("astra", "install it with `pip install napari-tomoml[astra]`")
    if filter_name not in _ASTRA_FILTERS or cutoff != 1.0:
        raise InputError(f"ASTRA has no {filter_name!r} filter with cutoff={cutoff}; use backend='torch'")
    n_det = proj.shape[2]
    shift = n_det / 2.0 - center
    if shift:
        proj = ndimage.shift(proj, (0, 0, shift), order=3, mode="constant")
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n_det, theta)
    projector = astra.create_projector("linear", proj_geom, vol_geom)
    out = np.empty((proj.shape[1], n, n), dtype=np.float32)
    try:
        for row in range(proj.shape[1]):
            sino_id = astra.data2d.create("-sino", proj_geom, np.ascontiguousarray(proj[:, row, :]))
            rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
            cfg = astra.astra_dict("FBP")
            cfg.update(ProjectorId=projector, ProjectionDataId=sino_id, ReconstructionDataId=rec_id)
            cfg["FilterType"] = _ASTRA_FILTERS[filter_name]
            alg = astra.algorithm.create(cfg)
            astra.algorithm.run(alg)
            out[row] = astra.data2d.get(rec_id)
            astra.algorithm.delete(alg)
            astra.data2d.delete([sino_id, rec_id])
    finally:
        astra.projector.delete(projector)
    return out


def _fbp_tomopy(proj, theta, center, filter_name, n, cutoff) -> np.ndarray:
    """tomopy's gridrec (its fast FBP); tomopy's centre convention is ours."""
    tomopy = _import_peer("tomopy", "install it from conda-forge (`conda install -c conda-forge tomopy`)")
    names = {
        "ramp": "ramlak",
        "shepp-logan": "shepp",
        "cosine": "cosine",
        "hamming": "hamming",
        "hann": "hann",
        "parzen": "parzen",
        "butterworth": "butterworth",
    }
    rec = tomopy.recon(
        proj,
        theta,
        center=center,
        algorithm="gridrec",
        filter_name=names[filter_name],
        filter_par=[cutoff, 2],
        ncore=None,
    )
    if rec.shape[-1] != n:
        raise v.InputError(f"tomopy reconstructs {rec.shape[-1]}^2 slices; ask for n={rec.shape[-1]}")
    return rec.astype(np.float32)
