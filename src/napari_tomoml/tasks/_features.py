"""Per-item feature vectors of a stack ``(N, h, w)``, computed in chunks with bounded memory.

Kinds (``features=``):

- ``"pixels"``: each item block-averaged to at most 32 pixels a side, then PCA (fitted
  incrementally, chunk by chunk) to at most 50 components.
- ``"spectrum"``: the radially averaged power spectrum (16 bands, as a fraction of the total)
  plus intensity statistics (mean, spread, percentiles, skewness, kurtosis).
- ``"sinogram"``: tomography physics of a sinogram ``(angles, cols)``. The Helgason–Ludwig
  consistency conditions say the zeroth moment over the detector is the same at every angle and
  the first moment is ``c0 + a cos θ + b sin θ`` (``c0`` = mass × centre offset); the features
  are how far each item breaks them, its centre offset, its angular smoothness (energy of the
  differences along θ against what the radius allows, correlation of fine detail between
  frames, jumps between frames), column statistics (stripes: one-column kinks that hold at every
  angle) and spikes (pixels far from their 3×3 median).
- ``"model:NAME"``: the encoder (bottleneck) activations of one of our networks, averaged and
  spread over the image — any model :func:`~napari_tomoml.models.store.load_model` reads. A module
  with an ``encode(x)`` method is used through it; otherwise the deepest, smallest activation of
  its convolutions is taken (the bottleneck of a U-Net), and the decoder is skipped.
- ``"auto"``: pixels + spectrum.

Every kind returns raw values; :func:`standardize` puts them on one scale for distances.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError, ModelFileError
from ..progress import Progress

KINDS = ("auto", "pixels", "spectrum", "sinogram")
# memory for one chunk of items as float32; bounds the working set of every extractor
CHUNK_BYTES = 32 << 20
PIXELS_SIDE = 32
PIXELS_COMPONENTS = 50
SPECTRUM_BANDS = 16


@dataclass
class FeatureTable:
    """Raw feature values ``(N, F)`` float64 with a name per column."""

    values: np.ndarray
    names: list[str]


# ---------------------------------------------------------------------------- input checks
def check_stack(stack: Any, name: str = "stack") -> Any:
    """An ``(N, h, w)`` array-like (NumPy, dask, h5py, zarr, or a list of equal 2-D arrays).

    Values are not read here (a lazy stack stays lazy); NaN items are found chunk by chunk.

    >>> check_stack([np.zeros((4, 4)), np.zeros((4, 5))])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_tomoml.errors.InputError: stack item 1 has shape (4, 5) but item 0 has (4, 4): ...
    """
    if isinstance(stack, (list, tuple)):
        if not stack:
            raise InputError(f"{name} is empty: give at least a few items (N, h, w)")
        first = np.shape(stack[0])
        for i, item in enumerate(stack):
            if np.shape(item) != first:
                raise InputError(
                    f"{name} item {i} has shape {tuple(np.shape(item))} but item 0 has {tuple(first)}: "
                    "all items must have one shape"
                )
        stack = np.stack([np.asarray(item) for item in stack])
    shape = getattr(stack, "shape", None)
    if shape is None:
        stack = np.asarray(stack)
        shape = stack.shape
    if len(shape) != 3:
        raise InputError(
            f"{name} must be a stack of 2-D items (N, h, w): slices, sinograms, projections or patches; "
            f"got shape {tuple(shape)}"
        )
    if min(shape) < 1:
        raise InputError(f"{name} has an empty axis: shape {tuple(shape)}")
    dtype = np.dtype(getattr(stack, "dtype", np.float32))
    if dtype.kind not in "biuf":
        raise InputError(f"{name} must hold real numbers (integers or floats); got dtype {dtype}")
    return stack


def chunk_items(shape: Sequence[int], budget: int = CHUNK_BYTES) -> int:
    """Items per chunk so that one float32 chunk stays within ``budget`` bytes.

    >>> chunk_items((100_000, 64, 64))
    2048
    """
    return int(max(1, min(shape[0], budget // (4 * int(np.prod(shape[1:]))))))


def iter_chunks(stack: Any, name: str = "stack", budget: int = CHUNK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float32 chunk)`` over the items; refuses NaN/inf items by index."""
    n = stack.shape[0]
    step = chunk_items(stack.shape, budget)
    for start in range(0, n, step):
        stop = min(start + step, n)
        chunk = np.asarray(stack[start:stop], dtype=np.float32)
        finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not finite.all():
            bad = (np.flatnonzero(~finite) + start).tolist()
            shown = ", ".join(map(str, bad[:5])) + (" …" if len(bad) > 5 else "")
            raise InputError(f"{name} item(s) {shown} contain NaN or infinite values; remove or repair them")
        yield start, chunk


def parse_kind(features: Any) -> str:
    if callable(features):
        return "callable"
    if not isinstance(features, str) or not (features in KINDS or features.startswith("model:")):
        raise InputError(
            f"features={features!r} is unknown; use one of {', '.join(map(repr, KINDS))} or 'model:NAME' "
            "(a bundled model name or a model file)"
        )
    if features == "model:":
        raise InputError("features='model:' needs a model name or file, e.g. 'model:tomogan-lowdose'")
    return features


# ---------------------------------------------------------------------------- extractors
def _block_factor(shape: Sequence[int]) -> int:
    return max(1, int(np.ceil(max(shape[1:]) / PIXELS_SIDE)))


def _downsample(chunk: np.ndarray, f: int) -> np.ndarray:
    from skimage.measure import block_reduce

    small = block_reduce(chunk, (1, f, f), np.mean) if f > 1 else chunk
    return small.reshape(len(chunk), -1)


class _Covariance:
    """Running mean and covariance of rows, chunk by chunk, for an exact PCA in one pass.

    Sums are taken about the first chunk's mean (float64), so they do not cancel. Cheaper than
    scikit-learn's IncrementalPCA, which runs an SVD per chunk (10 of 22 CPU s of the features
    of 10,000 items of 64²; this is under 1 s).
    """

    def __init__(self) -> None:
        self.n, self.shift, self.total, self.scatter = 0, None, None, None

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64)
        if self.shift is None:
            self.shift = rows.mean(0)
            self.total = np.zeros_like(self.shift)
            self.scatter = np.zeros((len(self.shift), len(self.shift)))
        centred = rows - self.shift
        self.n += len(rows)
        self.total += centred.sum(0)
        self.scatter += centred.T @ centred

    def pca(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, the ``k`` leading principal axes as rows), signs fixed so the largest entry is positive."""
        offset = self.total / self.n
        cov = (self.scatter - self.n * np.outer(offset, offset)) / max(self.n - 1, 1)
        values, vectors = np.linalg.eigh(cov)
        axes = vectors[:, np.argsort(values)[::-1][:k]].T
        axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])[:, None]
        return self.shift + offset, axes


def _pixels_steps(stack: Any, name: str, state: dict) -> Generator[Progress, None, FeatureTable]:
    """Downsampled pixels → PCA; the PCA is fitted here unless ``state`` holds one (a reference's)."""
    n = stack.shape[0]
    f = _block_factor(stack.shape)
    dims = int(np.prod([-(-s // f) for s in stack.shape[1:]]))
    cache: list[np.ndarray] | None = None
    if "pca_components" not in state:
        covariance = _Covariance()
        cache = [] if n * dims * 4 <= 4 * CHUNK_BYTES else None  # keep small downsampled stacks
        for start, chunk in iter_chunks(stack, name):
            small = _downsample(chunk, f)
            covariance.add(small)
            if cache is not None:
                cache.append(small)
            yield Progress(start + len(chunk), 2 * n, "pixels: fitting PCA")
        state["pca_mean"], state["pca_components"] = covariance.pca(min(PIXELS_COMPONENTS, n, dims))
    mean, components = np.asarray(state["pca_mean"]), np.asarray(state["pca_components"])
    if components.shape[1] != dims:
        raise InputError(
            f"{name} items downsample to {dims} pixels but the fitted PCA expects {components.shape[1]}"
        )
    out = np.empty((n, len(components)))
    if cache is not None:
        out[:] = (np.concatenate(cache) - mean) @ components.T
    else:
        for start, chunk in iter_chunks(stack, name):
            out[start : start + len(chunk)] = (_downsample(chunk, f) - mean) @ components.T
            yield Progress(n + start + len(chunk), 2 * n, "pixels: projecting")
    yield Progress(2 * n, 2 * n, "pixels")
    return FeatureTable(out, [f"pc{i + 1}" for i in range(len(components))])


def _radial_bands(h: int, w: int, bands: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    r = np.sqrt(fy**2 + fx**2) / 0.5  # 1 at Nyquist along an axis
    index = np.minimum((r * bands).astype(int), bands)  # corners beyond Nyquist: their own bin
    onehot = np.zeros((h * (w // 2 + 1), bands + 1))
    onehot[np.arange(index.size), index.ravel()] = 1.0
    return onehot[:, 1:bands]  # drop DC and the corners


def _spectrum_chunk(chunk: np.ndarray, bands: np.ndarray) -> np.ndarray:
    from scipy import fft

    c, h, w = chunk.shape
    flat = chunk.reshape(c, -1).astype(np.float64)
    mean = flat.mean(1)
    window = np.outer(np.hanning(h), np.hanning(w)) if min(h, w) > 2 else np.ones((h, w))
    # single-precision FFT: band powers are summed in float64 after; 2.5x cheaper than NumPy's
    spectrum = fft.rfft2((chunk - mean[:, None, None].astype(np.float32)) * window.astype(np.float32))
    power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag
    band_power = power.reshape(c, -1).astype(np.float64) @ bands
    total = band_power.sum(1, keepdims=True)
    shape = np.log10((band_power + 1e-12 * total + 1e-30) / (total + 1e-30))
    p1, p50, p99 = np.percentile(flat, [1, 50, 99], axis=1)
    # moments by hand: scipy.stats.skew/kurtosis demean twice and cost 3x the rest
    centred = flat - mean[:, None]
    sq = centred * centred
    m2 = sq.mean(1)
    with np.errstate(all="ignore"):
        skew = np.nan_to_num((sq * centred).mean(1) / m2**1.5)
        kurt = np.nan_to_num((sq * sq).mean(1) / m2**2 - 3.0)
    return np.column_stack([shape, mean, np.log10(np.sqrt(m2) + 1e-12), p1, p50, p99, skew, kurt])


def _spectrum_steps(stack: Any, name: str) -> Generator[Progress, None, FeatureTable]:
    n, h, w = stack.shape
    bands = _radial_bands(h, w, SPECTRUM_BANDS)
    out = None
    for start, chunk in iter_chunks(stack, name):
        values = _spectrum_chunk(chunk, bands)
        if out is None:
            out = np.empty((n, values.shape[1]))
        out[start : start + len(chunk)] = values
        yield Progress(start + len(chunk), n, "spectrum")
    names = [f"band{i}" for i in range(1, bands.shape[1] + 1)] + [
        "mean", "log_std", "p1", "p50", "p99", "skewness", "kurtosis"
    ]
    return FeatureTable(out, names)


SINOGRAM_FEATURES = [
    "hl0_spread",      # zeroth moment (mass) spread over angles, relative
    "hl1_residual",    # first moment minus its best c0 + a cos + b sin fit, relative
    "center_offset",   # c0 / mass: rotation centre minus detector middle, pixels
    "angular_energy",  # log energy of differences along angles / what the radius allows
    "angular_corr",    # correlation of fine detail between neighbouring frames
    "angular_jump",    # log largest frame-to-frame change / median change
    "stripe_kink",     # the 3 largest one-column kinks that hold at every angle (t-statistics)
    "spike_max",       # log largest |pixel - 3x3 median| / noise
]


def _sinogram_chunk(p: np.ndarray, theta: np.ndarray) -> np.ndarray:
    p = p.astype(np.float64)
    c, a, s = p.shape
    eps = 1e-12
    x = np.arange(s) + 0.5 - s / 2  # detector position from the middle, pixels
    # Helgason-Ludwig order 0 and 1
    m0 = p.sum(-1)  # (c, a)
    mass = np.median(m0, axis=1)
    scale = np.abs(mass) + eps
    hl0_spread = m0.std(1) / scale
    m1 = p @ x
    design = np.column_stack([np.ones(a), np.cos(theta), np.sin(theta)])
    coef, *_ = np.linalg.lstsq(design, m1.T, rcond=None)  # (3, c)
    resid = m1 - (design @ coef).T
    hl1 = np.sqrt((resid**2).mean(1)) / (scale * s / 4)
    mean_mass = m0.mean(1)
    center = coef[0] / np.where(np.abs(mean_mass) > eps, mean_mass, eps)
    # angular smoothness: a feature at radius r moves at most r pixels per radian, so the
    # energy along angles is bounded by (R^2 - x^2) dtheta^2 times the energy along the detector
    d_theta = np.diff(p, axis=1)
    e_theta = (d_theta**2).mean(1)[:, :-1]
    e_s = (np.diff(p, axis=2) ** 2).mean(1)
    x_mid = x[:-1] + 0.5
    step = float(np.median(np.abs(np.diff(theta)))) or np.pi / a
    inner = np.abs(x_mid) < 0.8 * s / 2
    allowed = np.clip((s / 2) ** 2 - x_mid**2, 1.0, None) * step**2
    angular = np.log10((e_theta[:, inner].sum(1) + eps) / ((e_s * allowed)[:, inner].sum(1) + eps))
    fine = p - ndimage.uniform_filter1d(p, 3, axis=2)
    fine -= fine.mean(1, keepdims=True)
    corr = (fine[:, 1:] * fine[:, :-1]).sum((1, 2)) / ((fine**2).sum((1, 2)) + eps)
    frame_change = np.sqrt((d_theta**2).mean(2))  # (c, a-1)
    jump = np.log10((frame_change.max(1) + eps) / (np.median(frame_change, 1) + eps))
    # stripes: a column offset at every angle is a one-column kink along the detector that keeps
    # its sign at every angle (t-statistic over angles), where the sample's own kinks change with
    # angle; the air/sample edge kinks at every angle too, so it is masked
    profile = p.mean(1)
    kink = np.zeros_like(p)
    kink[:, :, 1:-1] = p[:, :, 2:] - 2 * p[:, :, 1:-1] + p[:, :, :-2]
    t = np.abs(kink.mean(1)) / (kink.std(1) / np.sqrt(a) + eps)
    support = profile > 0.05 * np.abs(profile).max(1, keepdims=True)
    boundary = support ^ ndimage.binary_erosion(support, np.ones((1, 3)))
    edge = ndimage.binary_dilation(boundary, np.ones((1, 7)))
    t[edge] = 0.0
    stripe = np.sort(t, axis=1)[:, -3:].sum(1)
    # spikes (zingers): pixels far from their 3x3 median, against a robust noise level
    resid_px = np.abs(p - ndimage.median_filter(p, size=(1, 3, 3), mode="nearest")).reshape(c, -1)
    noise = 1.4826 * np.median(resid_px, 1) + eps
    spike_max = np.log10(resid_px.max(1) / noise + eps)
    return np.column_stack(
        [hl0_spread, hl1, center, angular, corr, jump, stripe, spike_max]
    )


def _sinogram_steps(stack: Any, name: str, theta: Any) -> Generator[Progress, None, FeatureTable]:
    n, a, _ = stack.shape
    if theta is None:
        theta = np.linspace(0.0, np.pi, a, endpoint=False)
    theta = np.asarray(theta, dtype=np.float64).ravel()
    if len(theta) != a:
        raise InputError(f"theta has {len(theta)} angles but the sinograms have {a} rows (angles, cols)")
    if a < 4:
        raise InputError(f"sinogram features need at least 4 angles per sinogram; got {a}")
    out = np.empty((n, len(SINOGRAM_FEATURES)))
    for start, chunk in iter_chunks(stack, name, budget=CHUNK_BYTES // 4):
        out[start : start + len(chunk)] = _sinogram_chunk(chunk, theta)
        yield Progress(start + len(chunk), n, "sinogram physics")
    return FeatureTable(out, list(SINOGRAM_FEATURES))


class _Stop(Exception):
    """Raised from a forward hook once the bottleneck has been reached: skips the decoder."""


def _bottleneck(module: Any, x: Any) -> tuple[str, Any]:
    """The name and output of the smallest (then deepest) 2-D activation for input ``x``.

    Every leaf layer (convolution, normalisation, activation…) is watched; in a U-Net or an
    encoder-decoder the smallest feature map is the bottleneck, and the last layer there has
    seen the most of the encoder.
    """
    import torch

    seen: list[tuple[int, int, str, Any]] = []
    hooks = []

    def watch(i: int, mod_name: str):
        def hook(_m, _i, out):
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                seen.append((int(out.shape[2] * out.shape[3]), -i, mod_name, out))

        return hook

    for i, (mod_name, mod) in enumerate(module.named_modules()):
        if mod_name and not any(True for _ in mod.children()):
            hooks.append(mod.register_forward_hook(watch(i, mod_name)))
    try:
        module(x)
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ModelFileError(f"{type(module).__name__} has no 2-D layers to take encoder features from")
    _, _, name, out = min(seen, key=lambda t: (t[0], t[1]))
    return name, out


@contextmanager
def _model_errors(spec: str, item_shape: tuple[int, ...]) -> Iterator[None]:
    """A network that cannot take these items says so in one line (not a torch traceback)."""
    try:
        yield
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"model {spec!r} cannot take items of shape {tuple(item_shape)}: {first}") from None


def _model_steps(stack: Any, name: str, spec: str, state: dict) -> Generator[Progress, None, FeatureTable]:
    import torch
    from torch import nn

    from ..models.normalization import Affine, fit_normalization
    from ..models.store import load_model

    loaded = load_model(spec, device="cpu")
    module = loaded.module.eval()
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ModelFileError(f"model {spec!r} has no 2-D convolutions: it cannot take (h, w) items")
    channels = convs[0].in_channels
    n = stack.shape[0]
    sample = np.asarray(stack[:: max(1, n // 64)], dtype=np.float32)
    if "affine" not in state:  # the normalisation a reference was scored with is kept
        fitted = fit_normalization(loaded.normalization, sample)
        state["affine"] = np.array([fitted.offset, fitted.scale])
    norm = Affine(*(float(v) for v in state["affine"]))
    item_bytes = 4 * int(np.prod(stack.shape[1:]))
    # activations are ~100x the input: chunks of few items keep memory bounded
    budget = max(item_bytes, CHUNK_BYTES // 64)
    encode = getattr(module, "encode", None)
    target: dict[str, Any] = {}
    out = None

    def capture(_m, _i, activation):
        target["out"] = activation
        raise _Stop

    for start, chunk in iter_chunks(stack, name, budget=budget):
        x = torch.from_numpy(np.ascontiguousarray(norm.apply(chunk), dtype=np.float32))[:, None]
        x = x.expand(-1, channels, -1, -1)  # one item in every input channel (slice context)
        with torch.inference_mode(), _model_errors(spec, chunk.shape[1:]):
            if callable(encode):
                act = encode(x)
            elif "module" not in target:
                layer, act = _bottleneck(module, x)
                target["module"] = dict(module.named_modules())[layer]
            else:
                hook = target["module"].register_forward_hook(capture)
                try:
                    module(x)
                except _Stop:
                    pass
                finally:
                    hook.remove()
                act = target.pop("out")
        act = act.float().flatten(2)
        values = torch.cat([act.mean(-1), act.std(-1, unbiased=False)], 1).numpy()
        if out is None:
            out = np.empty((n, values.shape[1]))
        out[start : start + len(chunk)] = values
        yield Progress(start + len(chunk), n, f"encoder features of {spec}")
    k = out.shape[1] // 2
    return FeatureTable(out, [f"enc_mean{i}" for i in range(k)] + [f"enc_std{i}" for i in range(k)])


def feature_steps(
    stack: Any,
    features: str | Callable[[np.ndarray], np.ndarray] = "auto",
    *,
    theta: Any = None,
    name: str = "stack",
    state: dict | None = None,
) -> Generator[Progress, None, FeatureTable]:
    """Raw features of every item of a checked stack (see the module docstring for the kinds).

    ``features`` may also be a callable mapping a float32 chunk ``(n, h, w)`` to ``(n, F)``.
    ``state`` carries what was fitted on one stack (the pixels PCA, a model's input
    normalisation) to another: empty, it is filled; filled, it is reused (reference scoring).
    """
    kind = parse_kind(features)
    state = {} if state is None else state
    if kind == "pixels":
        return (yield from _pixels_steps(stack, name, state))
    if kind == "spectrum":
        return (yield from _spectrum_steps(stack, name))
    if kind == "sinogram":
        return (yield from _sinogram_steps(stack, name, theta))
    if kind.startswith("model:"):
        return (yield from _model_steps(stack, name, kind[len("model:"):], state))
    if kind == "auto":
        pixels = yield from _pixels_steps(stack, name, state)
        spectrum = yield from _spectrum_steps(stack, name)
        return FeatureTable(np.hstack([pixels.values, spectrum.values]), pixels.names + spectrum.names)
    n = stack.shape[0]
    out = None
    for start, chunk in iter_chunks(stack, name):
        values = np.asarray(features(chunk), dtype=np.float64).reshape(len(chunk), -1)
        if out is None:
            out = np.empty((n, values.shape[1]))
        out[start : start + len(chunk)] = values
        yield Progress(start + len(chunk), n, "features")
    return FeatureTable(out, [f"f{i}" for i in range(out.shape[1])])


# ---------------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class Scaler:
    """Per-column centre and scale fitted on one table, applied to any table of the same kind.

    Robust: median and 1.4826 × MAD (the standard deviation for normal data), with a floor so a
    column that is constant on most items does not divide by zero. PCA columns (``pc*``) share
    one scale, the spread of the first component, so noise components are not blown up.
    """

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, table: FeatureTable) -> Scaler:
        v = table.values
        center = np.median(v, axis=0)
        mad = 1.4826 * np.median(np.abs(v - center), axis=0)
        spread = v.std(axis=0)
        scale = np.maximum(mad, 0.1 * spread)
        pcs = np.array([n.startswith("pc") for n in table.names])
        if pcs.any():
            center[pcs] = v[:, pcs].mean(0)
            scale[pcs] = spread[pcs].max()
        floor = 1e-9 * max(float(np.abs(v).max()), 1.0)
        return cls(center, np.maximum(scale, floor))

    def apply(self, table: FeatureTable) -> np.ndarray:
        return (table.values - self.center) / self.scale


def standardize(table: FeatureTable) -> np.ndarray:
    """Features on one scale (robust z-scores), float64 ``(N, F)``.

    >>> t = FeatureTable(np.array([[0.0], [1.0], [2.0], [100.0]]), ["x"])
    >>> standardize(t).ravel().round(2).tolist()
    [-0.35, -0.12, 0.12, 22.97]
    """
    return Scaler.fit(table).apply(table)
