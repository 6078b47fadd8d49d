"""Every task that runs one input file into one output file, declared once.

A :class:`TaskSpec` names the task, its parameters (:class:`Param`: type, default, help,
choices, bounds), the kind of input it reads, the output it writes and the generator that turns
one input into one output. The batch runner (:func:`napari_tomoml.batch`), ``tomoml batch`` and
the Batch widget read these declarations, so a task registered here is available in all three,
and its defaults are spelled in one place. Widgets are built with magicgui (imported only when
asked for), argparse options with :meth:`TaskSpec.add_arguments`.

>>> from napari_tomoml.tasks.registry import get_task, task_names
>>> "reconstruct" in task_names() and "denoise" in task_names()
True
>>> get_task("reconstruct").param("filter_name").default
'ramp'
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import Progress

#: Volume formats a task may write, by extension (what :func:`~napari_tomoml.io.writers.open_volume` takes).
VOLUME_FORMATS = ("npy", "tif", "h5", "zarr")


@dataclass(frozen=True)
class Param:
    """One option of a task: ``type`` is ``int``, ``float``, ``str`` or ``bool``.

    ``choices`` restricts the values; ``minimum``/``maximum`` bound numbers; ``optional`` allows
    ``None`` (an empty text in a widget or no value on the command line means "not given").
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    #: older command-line spellings kept working (``--filter`` for ``filter_name``); for a
    #: ``bool``, a flag that sets it (``--no-normalize`` for ``line_integrals``)
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, task: str = "") -> Any:
        """``value`` converted to this parameter's type, or :class:`InputError` naming the problem."""
        where = f"{task}: " if task else ""
        if value is None or (self.optional and value == ""):
            if self.optional or self.default is None:
                return None
            raise InputError(f"{where}{self.name} needs a value")
        try:
            if self.type is bool:
                if isinstance(value, str):
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("1", "true", "yes")
                converted = bool(value)
            elif self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                converted = self.type(value)
        except (TypeError, ValueError):
            raise InputError(f"{where}{self.name}={value!r}: expected {self.type.__name__}") from None
        if self.choices is not None and converted not in self.choices:
            raise InputError(f"{where}{self.name}={converted!r}: choose one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and converted < self.minimum:
            raise InputError(f"{where}{self.name}={converted!r}: must be at least {self.minimum}")
        if self.maximum is not None and converted > self.maximum:
            raise InputError(f"{where}{self.name}={converted!r}: must be at most {self.maximum}")
        return converted


#: ``run(input_path, output_path, options)``: reads the input, writes the output (atomically, so
#: the output's existence means "finished") and returns the result's metadata.
RunFunction = Callable[[Path, Path, dict[str, Any]], Generator[Progress, None, dict[str, Any]]]


@dataclass(frozen=True)
class TaskSpec:
    """A task's declaration: name, help, input kind, parameters, output and the function that runs it.

    ``input_kind`` is ``"scan"`` (raw projections with flats/darks, read by
    :func:`~napari_tomoml.load_scan`), ``"volume"`` (a reconstructed volume or image stack, read by
    :func:`~napari_tomoml.read_volume`). ``suffix`` is the output's extension, or ``None`` when the
    ``format`` parameter chooses it.
    """

    name: str
    help: str
    input_kind: str
    run: RunFunction
    params: tuple[Param, ...] = field(default_factory=tuple)
    suffix: str | None = None

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise InputError(f"task {self.name!r} has no option {name!r}; it has {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every option, from ``options`` where given and the declared default elsewhere, checked."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.names()))
        if unknown:
            raise InputError(
                f"task {self.name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options are {', '.join(self.names()) or '(none)'}"
            )
        return {p.name: p.check(options.get(p.name, p.default), self.name) for p in self.params}

    def output_suffix(self, options: dict[str, Any]) -> str:
        return self.suffix or "." + str(options.get("format") or VOLUME_FORMATS[0])

    # ------------------------------------------------------------------ generated front ends
    def add_arguments(self, parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
        """One ``--option`` (and its aliases) per parameter not in ``exclude``: choices, defaults
        and help from the declaration. Values stay text until :meth:`resolve` checks them."""
        for p in self.params:
            if p.name in exclude:
                continue
            default_text = "" if p.default is None else f" (default: {p.default})"
            if p.type is bool:
                parser.add_argument(p.flag, dest=p.name, action=argparse.BooleanOptionalAction,
                                    default=p.default, help=p.help)
                for alias in p.aliases:  # the first action's default stands
                    parser.add_argument(alias, dest=p.name, action="store_true", default=argparse.SUPPRESS,
                                        help=f"same as {p.flag}")
            else:
                parser.add_argument(p.flag, *p.aliases, dest=p.name, type=str, default=None,
                                    metavar="|".join(map(str, p.choices)) if p.choices else p.type.__name__.upper(),
                                    help=p.help + default_text)

    def options_from_args(self, args: argparse.Namespace) -> dict[str, Any]:
        """The options given on a command line (values still as text: :meth:`resolve` converts)."""
        return {p.name: getattr(args, p.name) for p in self.params if getattr(args, p.name, None) is not None}

    def widgets(self) -> Any:
        """A magicgui ``Container`` with one widget per parameter, named after it (needs magicgui)."""
        from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox

        items = []
        for p in self.params:
            label = p.name.replace("_", " ")
            if p.choices is not None:
                w = ComboBox(name=p.name, label=label, choices=list(p.choices), value=p.default)
            elif p.type is bool:
                w = CheckBox(name=p.name, label=label, value=bool(p.default))
            elif p.type in (int, float) and not p.optional:
                kind = SpinBox if p.type is int else FloatSpinBox
                bounds = {"min": p.minimum if p.minimum is not None else -1e9,
                          "max": p.maximum if p.maximum is not None else 1e9}
                w = kind(name=p.name, label=label, value=p.default, **bounds)
            else:
                w = LineEdit(name=p.name, label=label, value="" if p.default is None else str(p.default))
            w.tooltip = p.help
            items.append(w)
        return Container(widgets=items, labels=True)

    @staticmethod
    def widget_values(container: Any) -> dict[str, Any]:
        """The options a :meth:`widgets` container holds now (to be :meth:`resolve`-d)."""
        return {w.name: w.value for w in container}


_REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task (replacing one of the same name) so batch, CLI and widget offer it."""
    _REGISTRY[spec.name] = spec
    return spec


def task_names() -> list[str]:
    return list(_REGISTRY)


def default(task: str, option: str) -> Any:
    """The declared default of ``task``'s ``option``: what the CLI, batch and the widgets start at.

    >>> default("reconstruct", "algorithm")
    'fbp'
    """
    return get_task(task).param(option).default


def get_task(name: str | TaskSpec) -> TaskSpec:
    """The registered task ``name``, or :class:`InputError` listing the ones there are."""
    if isinstance(name, TaskSpec):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown task {name!r}: choose one of {', '.join(_REGISTRY)}") from None


# ------------------------------------------------------------------------------------- the tasks
def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    from .._writer import jsonable  # Qt-free

    return jsonable(meta)


def _center(text: str | None) -> float | str | None:
    if text is None or text == "":
        return None
    if str(text).lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise InputError(f"center {text!r}: give a number of detector pixels, 'auto', or nothing") from None


def memory_budget(text: str | int | None, option: str = "memory") -> int:
    """What a task may add to this process for a ``memory`` option: the process's peak (``"1GiB"``)
    less what it already holds, or by default (``None``) half the memory free now."""
    import psutil

    from .reconstruct import parse_memory

    if text is None:
        return psutil.virtual_memory().available // 2
    try:
        limit = parse_memory(text)
    except InputError as exc:
        raise InputError(f"--{option}{str(exc)[len('memory'):]}") from None
    held = psutil.Process().memory_info().rss
    if limit <= held:
        raise InputError(f"--{option} {text}: this process already holds {held / 2**30:.2f} GiB (Python, torch); "
                         "raise it")
    return limit - held


def lazy_volume(array: Any) -> Any:
    """A large memory-mapped ``.npy`` as a dask array of slices read with plain file reads, as
    HDF5 and zarr volumes are read: inference then reads and checks one slice at a time (a
    memmap is an ``ndarray``, which slice-by-slice tasks check as a whole, and its pages stay
    mapped: memory grows with the file)."""
    from ..io._common import as_dask, want_lazy
    from ..io.npy import NpyFrames

    if isinstance(array, np.memmap) and array.flags.c_contiguous and want_lazy(None, array.nbytes):
        return as_dask(NpyFrames(Path(array.filename), array.shape, array.dtype, array.offset))
    return array


def _task_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """The options a ``*_steps`` function takes as they are: all but the output's ``format``."""
    return {k: v for k, v in options.items() if k != "format"}


def _write_volume(output: Path, volume: Any, meta: dict[str, Any], source: Path) -> None:
    from ..io.writers import write_volume

    write_volume(output, volume, inputs=[source], metadata=_jsonable(dict(meta or {}, source=str(source))))


def _run_reconstruct(source: Path, output: Path, options: dict[str, Any]):
    from contextlib import ExitStack

    from ..io import load_scan
    from ..io.writers import open_volume
    from .reconstruct import reconstruct_scan_steps

    center = _center(options["center"])
    scan = load_scan(source)
    if center is None and scan.metadata.get("center") is not None:
        center = float(scan.metadata["center"])  # the file's own value, as `tomoml reconstruct`
    algo = {"algorithm": options["algorithm"], "filter_name": options["filter_name"], "device": options["device"]}
    if options["algorithm"] != "fbp":
        algo["n_iter"] = options["n_iter"] or ITERATIONS[options["algorithm"]]
    with ExitStack() as stack:
        def open_out(shape, meta):
            return stack.enter_context(open_volume(output, shape, inputs=[source],
                                                   metadata=_jsonable(dict(meta, source=str(source)))))

        _, meta = yield from reconstruct_scan_steps(
            scan.projections, scan.theta, open_out, metadata={"flats": scan.flats, "darks": scan.darks},
            raw=not options["line_integrals"], center=center, max_memory=memory_budget(options["memory"]),
            **algo)
    return meta


def _run_denoise(source: Path, output: Path, options: dict[str, Any]):
    from contextlib import ExitStack

    from ..io.volume import read_volume
    from ..io.writers import open_volume
    from .denoise import denoise_steps

    volume = lazy_volume(read_volume(source).data)  # lazy when large; each slice is written as it is denoised
    with ExitStack() as stack:
        def open_out(shape, meta):
            return stack.enter_context(open_volume(output, shape, inputs=[source],
                                                   metadata=_jsonable(dict(meta, source=str(source)))))

        _, meta = yield from denoise_steps(volume, out=open_out, **_task_arguments(options))
    return meta


def _run_segment(source: Path, output: Path, options: dict[str, Any]):
    from ..io.volume import read_volume
    from .segment import segment_steps

    volume = lazy_volume(read_volume(source).data)
    labels, meta = yield from segment_steps(volume, **_task_arguments(options))
    _write_volume(output, labels, meta, source)
    return meta


def _run_align(source: Path, output: Path, options: dict[str, Any]):
    from ..io import load_scan
    from ..prep import normalize
    from .align import align_steps
    from .embed import write_table_csv

    scan = load_scan(source)
    shifts, meta = yield from align_steps(normalize(scan), scan.theta, method=options["method"],
                                          center=_center(options["center"]), device=options["device"])
    write_table_csv({"angle_deg": np.degrees(np.asarray(scan.theta)), "dy": shifts[:, 0], "dx": shifts[:, 1]}, output)
    return meta


def _run_outliers(source: Path, output: Path, options: dict[str, Any]):
    from ..io.volume import read_volume
    from .embed import outlier_table_steps, write_table_csv

    stack = read_volume(source).data
    method = None if options["method"] == "none" else options["method"]
    columns = yield from outlier_table_steps(stack, features=options["features"], method=method,
                                             perplexity=options["perplexity"], seed=options["seed"])
    write_table_csv(columns, output)
    return {"task": "outliers", "items": len(columns["score"])}


#: recon.filters.FILTERS, spelled here so that listing tasks (and a batch that only skips finished
#: files) does not import torch; tests/tasks/test_registry.py keeps the two equal.
FBP_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann", "parzen", "butterworth")
#: iterations of each iterative algorithm when ``n_iter`` is not given (tasks.reconstruct uses these)
ITERATIONS = {"sirt": 100, "cgls": 30, "tv": 100}
_DEVICE = Param("device", str, "auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N")
_FORMAT = Param("format", str, "npy", "output format (file extension)", choices=VOLUME_FORMATS)
# as napari_tomoml.inference.precision.PRECISIONS (spelled here: the registry imports without torch)
_PRECISION = Param("precision", str, "fp32", "inference precision: fp32, bf16, int8 (ONNX Runtime, CPU) or auto "
                   "(the fastest here that keeps >= 45 dB PSNR against fp32)", choices=("fp32", "bf16", "int8", "auto"))


def _register_builtin() -> None:
    from importlib.util import find_spec

    register(TaskSpec(
        "reconstruct", "normalise each scan with its flats/darks (-log) and reconstruct a volume", "scan",
        _run_reconstruct,
        params=(
            Param("algorithm", str, "fbp", "reconstruction algorithm", choices=("fbp", "sirt", "cgls", "tv")),
            Param("center", str, None, "rotation centre in detector pixels, 'auto', or empty: the file's value, "
                  "else the detector middle", optional=True),
            Param("filter_name", str, "ramp", "FBP filter", choices=FBP_FILTERS, aliases=("--filter",)),
            Param("n_iter", int, None, "iterations of sirt/cgls/tv (empty: "
                  + ", ".join(f"{k} {v}" for k, v in ITERATIONS.items()) + ")", minimum=1, optional=True),
            Param("line_integrals", bool, False, "the inputs already hold line integrals (no flat/dark, -log)",
                  aliases=("--no-normalize",)),
            Param("memory", str, None, "most memory the process may use, e.g. 1GiB (empty: half of what is free); "
                  "the scan is read, reconstructed and written slab by slab of rows to stay below it",
                  optional=True),
            _DEVICE, _FORMAT,
        ),
    ))
    register(TaskSpec(
        "denoise", "denoise each reconstructed volume with a TomoGAN model", "volume", _run_denoise,
        params=(
            Param("model", str, "tomogan-lowdose", "bundled model name or model file path"),
            Param("tile", int, None, "tile side in pixels (empty: from the free memory, at most 1024)", minimum=16,
                  optional=True),
            Param("batch", int, None, "tiles run at once (empty: 1 on a CPU, 4 on a GPU); memory grows with it, "
                  "not with the volume, which is read and written slice by slice", minimum=1, optional=True),
            _PRECISION, _DEVICE, _FORMAT,
        ),
    ))
    # tasks other engineers add: registered once their module exists
    if find_spec("napari_tomoml.tasks.segment") is not None:
        register(TaskSpec(
            "segment", "segment each volume with a U-Net model (integer labels)", "volume", _run_segment,
            params=(
                Param("model", str, "unet-synthetic", "bundled model name or model file path"),
                Param("tile", int, None, "largest tile side in pixels (empty: from free memory)",
                      minimum=16, optional=True),
                _PRECISION, _DEVICE, _FORMAT,
            ),
        ))
    if find_spec("napari_tomoml.tasks.align") is not None:
        register(TaskSpec(
            "align", "measure each scan's projection shifts (dy, dx per angle) into a CSV table", "scan",
            _run_align, suffix=".csv",
            params=(
                Param("method", str, "joint", "alignment method", choices=("joint", "xcorr", "learned")),
                Param("center", str, None, "rotation centre in detector pixels, 'auto', or empty: the middle",
                      optional=True),
                _DEVICE,
            ),
        ))
    if find_spec("napari_tomoml.tasks.embed") is not None:
        register(TaskSpec(
            "outliers", "score how unusual each slice of each stack is into a CSV table", "volume",
            _run_outliers, suffix=".csv",
            params=(
                Param("features", str, "auto", "auto, pixels, spectrum, sinogram or model:NAME"),
                Param("method", str, "tsne", "2-D map", choices=("tsne", "pca", "umap", "none")),
                Param("perplexity", float, 30.0, "t-SNE perplexity", minimum=1.0),
                Param("seed", int, 0, "random seed of the map"),
            ),
        ))


_register_builtin()
