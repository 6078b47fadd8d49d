"""Which slices, sinograms or patches do not belong: a 2-D map of a stack and outlier scores.

Each item of a stack ``(N, h, w)`` becomes a feature vector (:mod:`._features`: ``"pixels"``,
``"spectrum"``, ``"sinogram"`` physics, ``"model:NAME"`` encoder activations, ``"auto"``); the
features are put on one robust scale, then

- :func:`embed` maps them to 2-D (openTSNE's FFT-accelerated t-SNE, scikit-learn PCA, or UMAP
  when umap-learn is installed), the map the napari Outliers widget draws;
- :func:`outlier_scores` ranks the items: the mean distance to their 10 nearest neighbours in
  feature space (higher = more unusual; the local outlier factor is in :func:`outlier_table`).
  With a ``reference`` stack (a model's training data) each item is scored for how far it falls
  outside the reference instead: :class:`Reference` is fitted once, stored as JSON (a model card
  can carry it), and scores any stack of the same item shape — whatever the model.

>>> import numpy as np, napari_tomoml as tm
>>> rng = np.random.default_rng(0)
>>> stack = rng.normal(size=(60, 16, 16)).astype(np.float32)
>>> stack[7] += 3.0                                     # one item does not belong
>>> int(np.argmax(tm.outlier_scores(stack)))
7
>>> tm.embed(stack, method="pca").shape
(60, 2)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import Progress, ProgressArg, run_to_end
from ._features import FeatureTable, Scaler, check_stack, feature_steps, parse_kind

METHODS = ("tsne", "pca", "umap")
NEIGHBORS = 10  # k of the k-NN distance score
LOF_NEIGHBORS = 20
TSNE_EXAGGERATION_ITER = 250  # openTSNE's defaults: early exaggeration, then the normal phase
TSNE_ITER = 500
TSNE_STEP = 50  # iterations between progress reports (and chances to cancel)
FFT_FROM = 2500  # points from which t-SNE gradients use FFT interpolation (measured crossover)
FFT_UNITS_PER_INTERVAL = 2
# reference points kept for OOD scoring: enough for a k-NN density, small enough for a JSON card
REFERENCE_POINTS = 5000


def _n_jobs() -> int:
    """Threads for openTSNE/scikit-learn: the CPUs we may use, capped by OMP_NUM_THREADS."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cpus, int(limit))) if limit.isdigit() and int(limit) > 0 else cpus


def _check_method(method: str, n: int, perplexity: float) -> None:
    if method not in METHODS:
        raise InputError(f"method={method!r} is unknown; use one of {', '.join(map(repr, METHODS))}")
    if method == "tsne":
        if not perplexity > 0:
            raise InputError(f"perplexity={perplexity!r} must be positive (typical: 5-50)")
        if n <= 3 * perplexity:
            raise InputError(
                f"t-SNE with perplexity {perplexity:g} needs more than {int(3 * perplexity)} items "
                f"(it looks at 3 x perplexity neighbours of each); the stack has {n}. Lower perplexity "
                f"(at most {max((n - 1) // 3, 1)}) or use method='pca'"
            )
    elif n < 3:
        raise InputError(f"a 2-D map needs at least 3 items; the stack has {n}")


# ---------------------------------------------------------------------------- embedding
def _tsne_steps(z: np.ndarray, perplexity: float, seed: int) -> Generator[Progress, None, np.ndarray]:
    from openTSNE import TSNEEmbedding, affinity, initialization

    total = TSNE_EXAGGERATION_ITER + TSNE_ITER
    yield Progress(0, total, "t-SNE: nearest neighbours")
    aff = affinity.PerplexityBasedNN(z, perplexity=perplexity, n_jobs=_n_jobs(), random_state=seed)
    init = initialization.pca(z, random_state=seed)
    # CPU s per 100 iterations, FFT vs Barnes-Hut: 1.9 vs 0.45 at 1k points, 1.7 vs 2.2 at 3k,
    # 2.8 vs 12 at 10k; openTSNE's own switch point (10k) is late on our CPUs
    method = "fft" if len(z) >= FFT_FROM else "bh"
    # FFT grid: one interpolation interval per 2 embedding units instead of openTSNE's 1. As the
    # map spreads (to ~180 units at 10k points) the default grid made the late iterations 6x
    # dearer (21 vs 3.7 CPU s per 100); at 2 units they stay at ~3 s, and the 10-nearest-neighbour
    # recall of the map is unchanged (0.410 vs 0.413 at 10k items)
    grid = {"ints_in_interval": FFT_UNITS_PER_INTERVAL} if method == "fft" else {}
    emb = TSNEEmbedding(init, aff, negative_gradient_method=method, n_jobs=_n_jobs(), random_state=seed, **grid)
    done = 0
    for phase_iter, exaggeration, momentum in ((TSNE_EXAGGERATION_ITER, 12.0, 0.5), (TSNE_ITER, None, 0.8)):
        for start in range(0, phase_iter, TSNE_STEP):
            n_iter = min(TSNE_STEP, phase_iter - start)
            # the optimiser's gains live on the embedding, so steps of 50 equal one long run
            emb.optimize(n_iter, inplace=True, exaggeration=exaggeration, momentum=momentum)
            done += n_iter
            yield Progress(done, total, "t-SNE")
    return np.asarray(emb, dtype=np.float32)


def embed_matrix_steps(
    z: np.ndarray, *, method: str = "tsne", perplexity: float = 30, seed: int = 0
) -> Generator[Progress, None, np.ndarray]:
    """2-D coordinates ``(N, 2)`` float32 of the rows of a feature matrix."""
    z = np.asarray(z, dtype=np.float64)
    _check_method(method, len(z), perplexity)
    if method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(z) if z.shape[1] >= 2 else np.column_stack(
            [z[:, 0], np.zeros(len(z))]
        )
        yield Progress(1, 1, "PCA")
        return xy.astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise InputError(
                "method='umap' needs umap-learn, which is not installed: pip install umap-learn, "
                "or use method='tsne'"
            ) from None
        yield Progress(0, 1, "UMAP")
        xy = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(z) - 1)).fit_transform(z)
        yield Progress(1, 1, "UMAP")
        return np.asarray(xy, dtype=np.float32)
    return (yield from _tsne_steps(z, perplexity, seed))


def embed_steps(
    stack: Any,
    *,
    method: str = "tsne",
    features: str | Callable = "auto",
    perplexity: float = 30,
    seed: int = 0,
    theta: Any = None,
) -> Generator[Progress, None, np.ndarray]:
    """The generator behind :func:`embed` (for widgets: progress and cancel at each step)."""
    stack = check_stack(stack)
    parse_kind(features)
    _check_method(method, stack.shape[0], perplexity)
    table = yield from feature_steps(stack, features, theta=theta)
    z = Scaler.fit(table).apply(table)
    return (yield from embed_matrix_steps(z, method=method, perplexity=perplexity, seed=seed))


def embed(
    stack: Any,
    *,
    method: str = "tsne",
    features: str | Callable = "auto",
    perplexity: float = 30,
    seed: int = 0,
    progress: ProgressArg = None,
) -> np.ndarray:
    """Map each item of a stack ``(N, h, w)`` to a point in 2-D; returns float32 ``(N, 2)``.

    ``stack``: slices of a volume, sinograms, projections or patches, as NumPy or lazy (dask,
    h5py, zarr) arrays, read in chunks. ``method``: ``"tsne"`` (openTSNE: FFT-accelerated
    gradients from 2,500 items on, Barnes-Hut below),
    ``"pca"`` or ``"umap"`` (needs umap-learn). ``features``: ``"auto"``, ``"pixels"``,
    ``"spectrum"``, ``"sinogram"`` or ``"model:NAME"`` (see :mod:`napari_tomoml.tasks._features`).
    Items close on the map have similar features; outliers sit apart.

    >>> import numpy as np
    >>> stack = np.random.default_rng(1).random((100, 8, 8), dtype=np.float32)
    >>> xy = embed(stack, perplexity=10)
    >>> xy.shape, xy.dtype
    ((100, 2), dtype('float32'))
    """
    return run_to_end(
        embed_steps(stack, method=method, features=features, perplexity=perplexity, seed=seed), progress
    )


# ---------------------------------------------------------------------------- scores
def knn_distance(z: np.ndarray, k: int = NEIGHBORS) -> np.ndarray:
    """Mean distance of each row to its ``k`` nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(k, len(z) - 1))
    dist, _ = NearestNeighbors(n_neighbors=k + 1, n_jobs=_n_jobs()).fit(z).kneighbors(z)
    return dist[:, 1:].mean(1)


def local_outlier_factor(z: np.ndarray, k: int = LOF_NEIGHBORS) -> np.ndarray:
    """scikit-learn's local outlier factor (about 1 inside a cluster, larger outside)."""
    from sklearn.neighbors import LocalOutlierFactor

    lof = LocalOutlierFactor(n_neighbors=max(1, min(k, len(z) - 1)), n_jobs=_n_jobs()).fit(z)
    return -lof.negative_outlier_factor_


def _check_scorable(n: int, what: str = "stack") -> None:
    if n < 3:
        raise InputError(
            f"outlier scores compare items with their neighbours: the {what} needs at least 3 items; got {n}"
        )


@dataclass
class Reference:
    """What a reference stack (e.g. a model's training data) looks like, to score new items against.

    Model-agnostic: it holds the feature kind, the item shape, the scale fitted on the reference
    and up to :data:`REFERENCE_POINTS` reference points in that scale. :meth:`score` gives each
    new item its mean distance to the ``k`` nearest reference points divided by the same
    distance typical inside the reference (leave-one-out median), so about 1 means "like the
    training data" and larger means further out. :meth:`to_dict` / :meth:`from_dict` make it
    JSON, for a model card.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = fit_reference(rng.normal(size=(200, 8, 8)), features="spectrum")
    >>> new = rng.normal(size=(5, 8, 8)); new[0] *= 5
    >>> s = ref.score(new)
    >>> bool(s[0] > 2 > s[1:].max())
    True
    """

    features: str
    item_shape: tuple[int, int]
    scaler: Scaler
    points: np.ndarray
    typical: float
    k: int = NEIGHBORS
    theta: list[float] | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def score_steps(self, stack: Any, *, name: str = "stack") -> Generator[Progress, None, np.ndarray]:
        from sklearn.neighbors import NearestNeighbors

        stack = check_stack(stack, name)
        if tuple(stack.shape[1:]) != tuple(self.item_shape):
            raise InputError(
                f"{name} items are {tuple(stack.shape[1:])} but the reference items are "
                f"{tuple(self.item_shape)}: "
                "scores compare like with like; crop or resample to the reference shape"
            )
        theta = None if self.theta is None else np.asarray(self.theta)
        table = yield from feature_steps(stack, self.features, theta=theta, name=name, state=self.state)
        z = self.scaler.apply(table)
        dist, _ = NearestNeighbors(n_neighbors=self.k).fit(self.points).kneighbors(z)
        return (dist.mean(1) / self.typical).astype(np.float64)

    def score(self, stack: Any) -> np.ndarray:
        """Out-of-distribution score of each item of ``stack`` (about 1 inside the reference)."""
        return run_to_end(self.score_steps(stack))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (floats as lists) that :meth:`from_dict` reads back."""
        return {
            "features": self.features,
            "item_shape": list(self.item_shape),
            "center": self.scaler.center.tolist(),
            "scale": self.scaler.scale.tolist(),
            "points": self.points.tolist(),
            "typical": self.typical,
            "k": self.k,
            "theta": self.theta,
            "state": {key: np.asarray(v).tolist() for key, v in self.state.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        try:
            return cls(
                features=data["features"],
                item_shape=tuple(data["item_shape"]),
                scaler=Scaler(np.asarray(data["center"], float), np.asarray(data["scale"], float)),
                points=np.asarray(data["points"], float),
                typical=float(data["typical"]),
                k=int(data.get("k", NEIGHBORS)),
                theta=data.get("theta"),
                state={key: np.asarray(v, float) for key, v in data.get("state", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a stored outlier reference: {exc}") from None


def fit_reference_steps(
    reference: Any, *, features: str = "auto", theta: Any = None, seed: int = 0
) -> Generator[Progress, None, Reference]:
    """The generator behind :func:`fit_reference`."""
    if callable(features):
        raise InputError("a stored reference needs a named feature kind, not a function")
    reference = check_stack(reference, "reference")
    _check_scorable(reference.shape[0], "reference")
    state: dict[str, Any] = {}
    table = yield from feature_steps(reference, features, theta=theta, name="reference", state=state)
    scaler = Scaler.fit(table)
    z = scaler.apply(table)
    if len(z) > REFERENCE_POINTS:
        z = z[np.random.default_rng(seed).choice(len(z), REFERENCE_POINTS, replace=False)]
    k = min(NEIGHBORS, len(z) - 1)
    typical = float(np.median(knn_distance(z, k))) or 1.0
    th = None if theta is None else [float(t) for t in np.ravel(theta)]
    return Reference(features, tuple(reference.shape[1:]), scaler, z, typical, k, th, state)


def fit_reference(reference: Any, *, features: str = "auto", theta: Any = None) -> Reference:
    """Fit a :class:`Reference` on a stack ``(N, h, w)``, e.g. the data a model was trained on.

    >>> import numpy as np
    >>> ref = fit_reference(np.random.default_rng(0).random((50, 8, 8)), features="pixels")
    >>> ref.item_shape, ref.features
    ((8, 8), 'pixels')
    """
    return run_to_end(fit_reference_steps(reference, features=features, theta=theta))


def outlier_scores_steps(
    stack: Any, *, features: str | Callable = "auto", reference: Any = None, theta: Any = None
) -> Generator[Progress, None, np.ndarray]:
    """The generator behind :func:`outlier_scores`."""
    stack = check_stack(stack)
    if reference is None:
        _check_scorable(stack.shape[0])
        table = yield from feature_steps(stack, features, theta=theta)
        return knn_distance(Scaler.fit(table).apply(table))
    if not isinstance(reference, Reference):
        ref_stack = check_stack(reference, "reference")
        if tuple(ref_stack.shape[1:]) != tuple(stack.shape[1:]):
            raise InputError(
                f"reference items are {tuple(ref_stack.shape[1:])} but the stack's are "
                f"{tuple(stack.shape[1:])}: "
                "give a reference of the same item shape"
            )
        reference = yield from fit_reference_steps(ref_stack, features=features, theta=theta)
    return (yield from reference.score_steps(stack))


def outlier_scores(
    stack: Any, *, features: str | Callable = "auto", reference: Any = None, theta: Any = None
) -> np.ndarray:
    """How unusual each item of a stack ``(N, h, w)`` is: float ``(N,)``, higher = more unusual.

    Without ``reference``: the mean distance of each item to its 10 nearest neighbours in
    (robustly scaled) feature space — an item unlike the rest of its own stack scores high.
    With ``reference`` (a stack of the same item shape, e.g. a model's training data, or a
    fitted :class:`Reference`): how far each item falls outside the reference, about 1 inside.
    ``theta`` (radians) are the sinogram angles for ``features="sinogram"`` (default: evenly over
    180°).

    >>> from napari_tomoml.sim.corrupt import corrupted_sinogram_stack
    >>> stack, theta, kinds = corrupted_sinogram_stack(200, n_corrupt_each=1)
    >>> scores = outlier_scores(stack, features="sinogram", theta=theta)
    >>> sorted(str(k) for k in kinds[np.argsort(scores)[::-1][:5]])
    ['angular-blur', 'missing-angles', 'stripes', 'wrong-center', 'zingers']
    """
    return run_to_end(outlier_scores_steps(stack, features=features, reference=reference, theta=theta))


# ---------------------------------------------------------------------------- one table
def outlier_table_steps(
    stack: Any,
    *,
    features: str | Callable = "auto",
    method: str | None = "tsne",
    reference: Any = None,
    theta: Any = None,
    perplexity: float = 30,
    seed: int = 0,
) -> Generator[Progress, None, dict[str, np.ndarray]]:
    """Everything the widget and the CLI show, from one pass of feature extraction.

    Columns: ``item``; ``x``, ``y`` (the 2-D map, unless ``method`` is None); ``score`` (k-NN
    distance, or the OOD score against ``reference``); ``lof`` (local outlier factor within the
    stack); then the raw features by name (all of them for the physics and spectrum kinds, the
    first 10 PCA components for pixels).
    """
    stack = check_stack(stack)
    parse_kind(features)
    n = stack.shape[0]
    _check_scorable(n)
    if method is not None:
        _check_method(method, n, perplexity)
    ref = None
    if reference is not None:
        if isinstance(reference, Reference):
            shape = reference.item_shape
        else:
            shape = check_stack(reference, "reference").shape[1:]
        if tuple(stack.shape[1:]) != tuple(shape):
            raise InputError(
                f"reference items are {tuple(shape)} but the stack's are {tuple(stack.shape[1:])}: "
                "give a reference of the same item shape"
            )
        ref = reference if isinstance(reference, Reference) else (
            yield from fit_reference_steps(reference, features=features, theta=theta)
        )
    table: FeatureTable = yield from feature_steps(stack, features, theta=theta)
    z = Scaler.fit(table).apply(table)
    columns: dict[str, np.ndarray] = {"item": np.arange(n)}
    if method is not None:
        xy = yield from embed_matrix_steps(z, method=method, perplexity=perplexity, seed=seed)
        columns["x"], columns["y"] = xy[:, 0], xy[:, 1]
    if ref is not None:
        columns["score"] = yield from ref.score_steps(stack)
    else:
        columns["score"] = knn_distance(z)
    columns["lof"] = local_outlier_factor(z)
    for j, name in enumerate(table.names):
        if not (name.startswith("pc") and int(name[2:]) > 10) and not name.startswith("enc_"):
            columns[name] = table.values[:, j]
    yield Progress(1, 1, "outlier table")
    return columns


def write_table_csv(columns: dict[str, np.ndarray], path: Any, *, overwrite: bool = False) -> Any:
    """Write a table of equal-length columns as CSV, atomically (a temporary file, then rename)."""
    import csv

    from ..io.writers import atomic_output

    names = list(columns)
    data = [np.asarray(columns[k]) for k in names]
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(names)
            for row in zip(*data):
                writer.writerow([v.item() if isinstance(v, np.generic) else v for v in row])
    return path
