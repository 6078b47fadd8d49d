"""``tomoml``: the command line for batch jobs (no napari, no Qt).

    tomoml info SCAN
    tomoml reconstruct SCAN OUT [--algorithm fbp|sirt|cgls|tv] [--center C|auto] [--filter ramp]
                                [--rows A:B] [--n-iter N] [--device auto] [--memory 1GiB] [--overwrite]
    tomoml denoise VOLUME OUT [--model NAME|PATH] [--device auto] [--overwrite]
    tomoml train tomogan OUT (--pairs PAIRS.h5 | --noisy VOL --clean VOL) [--steps N] ...
                             [--checkpoint DIR] [--resume] [--overwrite]
    tomoml import-tomogan KERAS_H5 OUT [--overwrite]
    tomoml train unet OUT --image IMG --labels LABELS [--sparse] [--steps N] ...
    tomoml segment IN OUT [--model NAME|PATH] [--tile N] [--probabilities PROB.npy]
    tomoml outliers IN --out TABLE.csv [--reference REF] [--features sinogram] [--sinograms]
    tomoml align SCAN OUT [--method joint|xcorr|learned] [--center C|auto] [--shifts TABLE.csv]

Every command drives the same ``*_steps`` generators as the napari widgets, with a progress bar
on stderr. A :class:`~napari_tomoml.errors.TomomlError` is printed as ``tomoml: error: ...`` and
the exit code is 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_ERROR = 2
VOLUME_SUFFIXES = (".tif", ".tiff", ".h5", ".hdf5", ".zarr", ".npy")


# ---------------------------------------------------------------------------- helpers
def _error(message: str) -> int:
    print(f"tomoml: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def parse_rows(text: str | None) -> slice | None:
    """``"a:b"`` → ``slice(a, b)`` (either side may be empty); ``None`` → all rows."""
    from .errors import InputError

    if text is None or text in ("", ":"):
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise InputError(f"--rows {text!r}: expected START:STOP, e.g. 100:200 (or 100: or :200)")
    try:
        start = int(parts[0]) if parts[0].strip() else None
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise InputError(f"--rows {text!r}: START and STOP must be whole numbers") from None
    if start is not None and stop is not None and stop <= start:
        raise InputError(f"--rows {text!r}: STOP must be larger than START")
    return slice(start, stop)


def parse_center(text: str | None) -> float | str | None:
    from .errors import InputError

    if text is None or text.lower() == "auto":
        return "auto" if text is not None else None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--center {text!r}: give a number of detector pixels or 'auto'") from None


def _check_output(out: Path, overwrite: bool, inputs: Sequence[Any] = ()) -> None:
    """Fail before any work: unknown format, existing output, output = input, unwritable folder."""
    from .errors import InputError
    from .io.writers import check_output

    if out.suffix.lower() not in VOLUME_SUFFIXES:
        raise InputError(
            f"output {str(out)!r}: unknown format {out.suffix or '(no extension)'!r}; "
            f"use one of {', '.join(VOLUME_SUFFIXES)}"
        )
    check_output(out, overwrite=overwrite, inputs=inputs)


def write_volume(out: Path, volume: Any, *, overwrite: bool = False, metadata: dict | None = None,
                 inputs: Sequence[Any] = ()) -> Path:
    """Write ``volume`` by the extension of ``out`` (.tif/.tiff/.h5/.hdf5/.zarr/.npy), atomically."""
    from .io.writers import write_volume as write

    _check_output(out, overwrite, inputs)
    return write(out, volume, overwrite=overwrite, inputs=inputs,
                 metadata=None if metadata is None else _jsonable(metadata))


def _jsonable(meta: dict) -> dict:
    from ._writer import jsonable  # Qt-free

    return jsonable(meta)


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet


# ---------------------------------------------------------------------------- commands
def cmd_info(args: argparse.Namespace) -> int:
    from . import load_scan

    scan = load_scan(Path(args.path))
    print(scan.summary())
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    out = Path(args.output)
    _check_output(out, args.overwrite, [args.input])  # cheap checks first: fail before reading anything
    rows = parse_rows(args.rows)
    center = parse_center(args.center)
    max_memory = _parse_memory(args.memory)

    from contextlib import ExitStack

    from . import load_scan
    from .io.writers import open_volume
    from .progress import run_to_end
    from .tasks.reconstruct import reconstruct_scan_steps

    scan = load_scan(Path(args.input))
    if rows is not None:
        start, stop, _ = rows.indices(scan.shape[1])
        if stop <= start:
            from .errors import InputError

            raise InputError(f"--rows {args.rows}: no rows selected (the scan has {scan.shape[1]})")
    prepare: dict[str, Any] = {}
    if args.phase:
        from .recon.phase import parse_phase_option

        prepare["phase"] = parse_phase_option(args.phase, scan.metadata)
    if center is None and scan.metadata.get("center") is not None:
        center = float(scan.metadata["center"])  # the file's own value
    options: dict[str, Any] = {"algorithm": args.algorithm, "filter_name": args.filter, "device": args.device}
    if args.n_iter is not None:
        options["n_iter"] = args.n_iter
    metadata = {"flats": scan.flats, "darks": scan.darks, "zinger_threshold": args.zinger}

    with ExitStack() as stack:
        def open_out(shape, meta):  # the file is opened once the shape and provenance are known
            meta = dict(meta, source=str(args.input))
            if args.phase:
                meta["phase"] = {"method": "paganin", **prepare["phase"]}
            return stack.enter_context(open_volume(out, shape, overwrite=args.overwrite, inputs=[args.input],
                                                   metadata=_jsonable(meta)))

        steps = reconstruct_scan_steps(scan.projections, scan.theta, open_out, metadata=metadata,
                                       raw=not args.no_normalize, rows=rows, center=center, prepare=prepare,
                                       max_memory=max_memory, **options)
        volume, meta = run_to_end(steps, progress=_progress(args))
    c = meta.get("center")
    if args.center == "auto":
        print(f"rotation centre (found): {c:.2f} px", file=sys.stderr)
    c_text = f", centre {c:.2f} px" if isinstance(c, (int, float)) else ""
    print(f"wrote {out} ({' x '.join(map(str, volume.shape))} {args.algorithm}{c_text})")
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _parse_memory(text: str | None) -> int:
    """``--memory``: the command's peak memory, a size like 1GiB (by default half the memory free
    now), returned as what the task may add to what this process already holds."""
    import psutil

    from .errors import InputError
    from .tasks.reconstruct import parse_memory

    if text is None:
        return psutil.virtual_memory().available // 2
    try:
        limit = parse_memory(text)
    except InputError as exc:
        raise InputError(f"--{exc}") from None
    held = psutil.Process().memory_info().rss
    if limit <= held:
        raise InputError(f"--memory {text}: this command already holds {held / 2**30:.2f} GiB (Python, torch); raise it")
    return limit - held


def _read_volume(path: Path):
    """A volume (z, y, x) from .npy, a TIFF stack, HDF5 (/exchange/data) or zarr (the first array)."""
    import numpy as np

    from . import load_scan

    if path.suffix.lower() == ".npy" and path.is_file():
        from .errors import ScanReadError

        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ScanReadError(f"{path}: not a readable .npy file, corrupt or truncated? ({exc})") from None
    return load_scan(path).projections  # the io readers treat any 3-D stack alike


def cmd_denoise(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from .io.writers import open_volume
    from .progress import run_to_end
    from .tasks.denoise import denoise_steps

    out = Path(args.output)
    _check_output(out, args.overwrite, [args.input])
    volume = _read_volume(Path(args.input))
    with ExitStack() as stack:
        def open_out(shape, meta):  # each slice is written as it is denoised: memory stays bounded
            meta = dict(meta, source=str(args.input))
            return stack.enter_context(open_volume(out, shape, overwrite=args.overwrite, inputs=[args.input],
                                                   metadata=_jsonable(meta)))

        denoised, _ = run_to_end(denoise_steps(volume, model=args.model, device=args.device, batch=args.batch,
                                               out=open_out), progress=_progress(args))
    print(f"wrote {out} ({' x '.join(map(str, denoised.shape))}, model {args.model})")
    return 0


def cmd_train_tomogan(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .io.writers import check_output
    from .models.store import _paths
    from .progress import run_to_end
    from .tasks.train import check_options, default_checkpoint, train_and_save_steps

    check_options({"steps": args.steps, "batch": args.batch, "crop": args.crop, "val_every": args.val_every})
    for target in _paths(Path(args.output)):  # before reading the training data
        check_output(target, overwrite=args.overwrite)
    if bool(args.pairs) == bool(args.noisy or args.clean):
        raise InputError("give either --pairs FILE.h5 or both --noisy and --clean volumes")
    if args.pairs:
        source: dict[str, Any] = {"hdf5": args.pairs}
    else:
        if not (args.noisy and args.clean):
            raise InputError("--noisy and --clean go together")
        source = {"noisy": _read_volume(Path(args.noisy)), "clean": _read_volume(Path(args.clean)),
                  "val_fraction": args.val_fraction}
    out = Path(args.output)
    options: dict[str, Any] = {
        "depth": args.depth, "steps": args.steps, "batch": args.batch, "crop": args.crop,
        "val_every": args.val_every, "seed": args.seed, "device": args.device,
        "losses": {"lambda_mse": args.lambda_mse, "lambda_adv": args.lambda_adv, "lambda_vgg": args.lambda_vgg},
    }
    if args.vgg:
        options["vgg"] = args.vgg
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(out)
    steps = train_and_save_steps(source, str(out), options, checkpoint_dir=checkpoint, resume=args.resume,
                                 overwrite=args.overwrite)
    path, best = run_to_end(steps, progress=_progress(args))
    scores = ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k in ("psnr", "ssim", "val_loss"))
    print(f"wrote {path}" + (f" (best validation: {scores})" if scores else ""))
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    import numpy as np

    from . import load_scan, normalize
    from .io.writers import check_output
    from .progress import run_to_end
    from .tasks.align import align_steps, apply_shifts
    from .tasks.embed import write_table_csv

    out = Path(args.output)
    _check_output(out, args.overwrite, [args.input])
    table = Path(args.shifts) if args.shifts else out.with_name(out.name.split(".")[0] + "_shifts.csv")
    check_output(table, overwrite=args.overwrite, inputs=[args.input])
    scan = load_scan(Path(args.input))
    if args.no_normalize:
        proj = np.asarray(scan.projections, dtype=np.float32)
    else:
        proj = normalize(scan.projections, scan.flats, scan.darks)
    options: dict[str, Any] = {}
    if args.method == "learned":
        options["model"] = args.model
    if args.method == "joint":
        options["refine_center"] = not args.fixed_center
        if args.iterations is not None:
            options["iterations"] = args.iterations
    center = parse_center(args.center) if args.method == "joint" else None
    shifts, meta = run_to_end(
        align_steps(proj, scan.theta, method=args.method, center=center, device=args.device, **options),
        progress=_progress(args),
    )
    aligned = apply_shifts(proj, shifts, device=args.device)
    meta = {k: v for k, v in meta.items() if k not in ("card", "updates")}
    meta["source"] = str(args.input)
    write_volume(out, aligned, overwrite=args.overwrite, metadata=meta, inputs=[args.input])
    write_table_csv({"index": np.arange(len(shifts)), "angle_deg": np.degrees(np.asarray(scan.theta)),
                     "dy": shifts[:, 0], "dx": shifts[:, 1]}, table, overwrite=args.overwrite)
    extra = f", refined centre {meta['center_refined']:.2f} px" if "center_refined" in meta else ""
    print(f"wrote {out} and {table} ({args.method}, {meta['seconds']:.1f} s, "
          f"max |dx| {np.abs(shifts[:, 1]).max():.2f} px, max |dy| {np.abs(shifts[:, 0]).max():.2f} px{extra})")
    return 0


def cmd_import_tomogan(args: argparse.Namespace) -> int:
    from . import import_tomogan_keras

    path = import_tomogan_keras(Path(args.keras_h5), Path(args.output), overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


def _read_stack(path: Path, sinograms: bool):
    """Items to score from a file: its first axis, or (``sinograms``) the sinograms of a scan."""
    import numpy as np

    from . import load_scan

    if not sinograms:
        return _read_volume(path), None
    scan = load_scan(path)
    return np.moveaxis(scan.projections, 1, 0), scan.theta  # (rows, angles, cols); dask stays lazy


def cmd_outliers(args: argparse.Namespace) -> int:
    import numpy as np

    from .io.writers import check_output
    from .progress import run_to_end
    from .tasks.embed import outlier_table_steps, write_table_csv

    inputs = [args.input] + ([args.reference] if args.reference else [])
    out = check_output(Path(args.out), overwrite=args.overwrite, inputs=inputs)
    stack, theta = _read_stack(Path(args.input), args.sinograms)
    reference = _read_stack(Path(args.reference), args.sinograms)[0] if args.reference else None
    columns = run_to_end(
        outlier_table_steps(stack, features=args.features, method=None if args.method == "none" else args.method,
                            reference=reference, theta=theta, perplexity=args.perplexity, seed=args.seed),
        progress=_progress(args),
    )
    write_table_csv(columns, out, overwrite=args.overwrite)
    top = np.argsort(-columns["score"])[: args.top]
    what = "outside the reference" if reference is not None else "most unusual"
    print(f"wrote {out} ({len(columns['score'])} items); {what}: "
          + ", ".join(f"{i} ({columns['score'][i]:.3g})" for i in top))
    return 0


def _parse_classes(text: str | None):
    from .errors import InputError

    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--classes {text!r}: give a number of classes (3) or label values (0,1,2)") from None
    return values[0] if len(values) == 1 and "," not in text else values


def _not_an_input(out: Path, inputs: list) -> None:
    from .errors import InputError

    for source in inputs:
        if source and Path(source).resolve() == out.resolve():
            raise InputError(f"output {str(out)!r} is an input; write the result under another name")


def cmd_train_unet(args: argparse.Namespace) -> int:
    import numpy as np

    from .errors import OutputExistsError
    from .progress import run_to_end
    from .tasks.segment import save_model, train_unet_steps

    out = Path(args.output)
    stem = out.with_suffix("") if out.suffix in (".safetensors", ".json") else out
    for path in (stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")):
        if path.exists() and not args.overwrite:
            raise OutputExistsError(f"model {str(path)!r} exists; pass --overwrite to replace it")
    _not_an_input(stem.with_name(stem.name + ".safetensors"), [args.image, args.labels])
    classes = _parse_classes(args.classes)
    image = np.asarray(_read_volume(Path(args.image)))
    labels = np.asarray(_read_volume(Path(args.labels)))
    options: dict[str, Any] = {"batch": args.batch, "seed": args.seed, "depth": args.depth, "width": args.width}
    if args.checkpoint:
        options["checkpoint_dir"] = args.checkpoint
    model = run_to_end(
        train_unet_steps(image, labels, classes=classes, sparse=args.sparse, patch=args.patch, steps=args.steps,
                         loss=args.loss, device=args.device, **options),
        progress=_progress(args),
    )
    path = save_model(model, stem, overwrite=args.overwrite)
    dice = model.card["metrics"].get("validation", {})
    scores = ", ".join(f"{k} {v:.3f}" for k, v in dice.items())
    print(f"wrote {path}" + (f" (validation: {scores})" if scores else ""))
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from .errors import InputError
    from .progress import run_to_end
    from .tasks.segment import segment_steps

    out = Path(args.output)
    _check_output(out, args.overwrite)
    _not_an_input(out, [args.input])
    prob_out = Path(args.probabilities) if args.probabilities else None
    if prob_out is not None:
        if prob_out.suffix.lower() != ".npy":
            raise InputError(f"--probabilities {str(prob_out)!r}: probabilities (classes, z, y, x) are written as .npy")
        _check_output(prob_out, args.overwrite)
        _not_an_input(prob_out, [args.input, args.output])
    volume = _read_volume(Path(args.input))
    labels, meta = run_to_end(segment_steps(volume, model=args.model, device=args.device, tile=args.tile,
                                            probabilities=prob_out is not None), progress=_progress(args))
    meta = dict(meta or {})
    meta.setdefault("source", str(args.input))
    if prob_out is not None:
        write_volume(prob_out, labels, overwrite=args.overwrite)
        labels = np.asarray(meta["classes"]["values"], np.uint8)[labels.argmax(0)]
    if labels.ndim == 2 and out.suffix.lower() != ".npy":
        labels = labels[None]
    write_volume(out, labels, overwrite=args.overwrite, metadata=meta)
    print(f"wrote {out} ({' x '.join(map(str, np.shape(labels)))} labels, model {args.model})"
          + (f" and {prob_out}" if prob_out is not None else ""))
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Options after TASK come from the task registry; argparse errors there are one-line usage errors."""
    from .errors import InputError
    from .progress import run_to_end
    from .tasks.batch import SUMMARY_NAME, batch_steps
    from .tasks.registry import get_task

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line and exit 2, as every other usage error
            raise InputError(f"batch {args.task}: {message}")

    spec = get_task(args.task)
    p = _Parser(prog=f"tomoml batch {spec.name}", description=spec.help)
    p.add_argument("input", help="a folder (each entry is one input), a quoted glob, or one file")
    p.add_argument("output", help="folder for the results and batch-summary.csv")
    spec.add_arguments(p)
    p.add_argument("--workers", type=int, default=1, help="local worker processes (Dask LocalCluster)")
    p.add_argument("--scheduler", default=None, help="a Dask scheduler address (tcp://host:8786) or local:N")
    p.add_argument("--no-resume", action="store_true", help="compute again the inputs whose output exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    opts = p.parse_args(args.rest)
    steps = batch_steps(spec, opts.input, opts.output, options=spec.options_from_args(opts),
                        resume=not opts.no_resume, workers=opts.workers, scheduler=opts.scheduler)
    summary = run_to_end(steps, progress=not opts.quiet)
    counts = summary.counts()
    print(f"batch {spec.name}: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("ok", "skipped", "failed"))
          + f"; summary in {Path(opts.output) / SUMMARY_NAME}")
    for row in summary.failed:
        print(f"  failed: {Path(row['input']).name}: {row['error']}")
    return 1 if summary.failed else 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="tomoml",
        description="Machine-learning methods for X-ray tomography: read, reconstruct, denoise.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="print a summary of a scan (shape, angles, flats/darks)")
    p.add_argument("path", help="scan file or folder (.h5/.hdf5/.nxs/.npy/.zarr/.tif or a TIFF folder)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "reconstruct",
        help="normalise a scan and reconstruct a volume",
        description="Load a scan, normalise it with its flats/darks (−log), reconstruct, and write "
        "the volume by the output's extension (.tif/.tiff/.h5/.hdf5/.zarr/.npy).",
    )
    p.add_argument("input", help="scan file or folder")
    p.add_argument("output", help="volume to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    p.add_argument("--algorithm", default="fbp", choices=["fbp", "sirt", "cgls", "tv"])
    p.add_argument("--center", default=None, help="rotation centre in detector pixels, or 'auto' (default: "
                   "the value in the file, else the detector middle)")
    p.add_argument("--filter", default="ramp", help="FBP filter (default: ramp)")
    p.add_argument("--rows", default=None, help="detector rows START:STOP to reconstruct (default: all)")
    p.add_argument("--n-iter", type=int, default=None, help="iterations for sirt/cgls/tv")
    p.add_argument("--zinger", type=float, default=None, help="remove zingers above this threshold")
    p.add_argument("--no-normalize", action="store_true", help="the input already holds line integrals")
    p.add_argument("--phase", default=None, metavar="delta_beta=D,distance_mm=Z,energy_kev=E[,pixel_size_um=P]",
                   help="Paganin phase retrieval before reconstructing (pixel size: from the file if it has one)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N")
    p.add_argument("--memory", default=None, help="most memory to use, e.g. 1GiB (default: half of what is "
                   "free); the scan is reconstructed and written slab by slab of rows to stay below it")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("denoise", help="denoise a reconstructed volume with a trained model")
    p.add_argument("input", help="volume (.npy/.tif/.h5/.zarr)")
    p.add_argument("output", help="volume to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    p.add_argument("--model", default="tomogan-lowdose", help="bundled model name or model file path")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=_positive_int, default=None, help="tiles run at once (default 1 on a CPU, 4 on a GPU); memory "
                   "grows with it, not with the volume, which is read and written slice by slice")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_denoise)

    p = sub.add_parser("segment", help="segment an image or volume with a U-Net model")
    p.add_argument("input", help="image or volume (.npy/.tif/.h5/.zarr)")
    p.add_argument("output", help="labels to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    p.add_argument("--model", default="unet-synthetic", help="bundled model name or model file path")
    p.add_argument("--tile", type=int, default=None, help="largest tile side in pixels (default: from free memory)")
    p.add_argument("--probabilities", help="also write per-class probabilities (classes, ...) to this .npy")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("train", help="train a model (train tomogan ...)")
    train_sub = p.add_subparsers(dest="model", metavar="MODEL")
    t = train_sub.add_parser(
        "tomogan",
        help="train a TomoGAN denoiser on noisy/clean volume pairs",
        description="Train TomoGAN on paired volumes: --pairs FILE.h5 (datasets train_ns, train_gt, "
        "test_ns, test_gt) or --noisy VOLUME --clean VOLUME (the last slices are held out for validation).",
    )
    t.add_argument("output", help="model to write (OUTPUT.safetensors + OUTPUT.json)")
    t.add_argument("--pairs", help="HDF5 with train_ns/train_gt/test_ns/test_gt")
    t.add_argument("--noisy", help="noisy volume (.npy/.tif/.h5/.zarr)")
    t.add_argument("--clean", help="clean volume, same shape")
    t.add_argument("--val-fraction", type=float, default=0.2, help="slices held out for validation")
    t.add_argument("--depth", type=int, default=3, choices=[1, 3, 5, 7], help="adjacent slices in")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=64)
    t.add_argument("--val-every", type=int, default=50)
    t.add_argument("--lambda-mse", type=float, default=1.0)
    t.add_argument("--lambda-adv", type=float, default=1e-3)
    t.add_argument("--lambda-vgg", type=float, default=0.0, help="perceptual loss weight (needs --vgg)")
    t.add_argument("--vgg", help="VGG19 weights for the perceptual loss")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--checkpoint", metavar="DIR", help="where to checkpoint at each validation "
                   "(default: OUTPUT.checkpoint beside the model; removed once the model is saved)")
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in the checkpoint "
                   "(same settings and data); ends with the weights an uninterrupted run would have")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model, or start over "
                   "from an interrupted run's checkpoint")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train_tomogan)

    t = train_sub.add_parser(
        "unet",
        help="train a U-Net segmenter on an image and its labels",
        description="Train a U-Net on class-balanced patches of IMAGE (2-D, or a volume's slices) and LABELS "
        "(same shape): a dense mask (every value a class, 0 = background) or, with --sparse, painted "
        "annotations (0 = not annotated, classes 1..K). Writes OUTPUT.safetensors + OUTPUT.json.",
    )
    t.add_argument("output", help="model to write (OUTPUT.safetensors + OUTPUT.json)")
    t.add_argument("--image", required=True, help="image or volume (.npy/.tif/.h5/.zarr)")
    t.add_argument("--labels", required=True, help="labels of the same shape (.npy/.tif/.h5/.zarr)")
    t.add_argument("--sparse", action="store_true", help="0 in LABELS means 'not annotated'")
    t.add_argument("--classes", help="number of classes (3) or label values (0,1,2); default: from the labels")
    t.add_argument("--patch", type=int, default=128, help="patch side in pixels (default 128)")
    t.add_argument("--steps", type=int, default=None, help="training steps (default 300)")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--depth", type=int, default=3, help="U-Net pooling levels (default 3)")
    t.add_argument("--width", type=int, default=16, help="channels of the first level (default 16)")
    t.add_argument("--loss", default="ce+dice", help="ce, wce, bce, dice or a sum like ce+dice (default)")
    t.add_argument("--checkpoint", help="checkpoint folder (resumed when it holds one)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train_unet)

    p = sub.add_parser(
        "align",
        help="align a misaligned projection stack (write the aligned stack and a shifts table)",
        description="Estimate per-projection shifts (dy, dx; measured = shift(aligned, (dy, dx))), undo "
        "them, write the aligned stack by the output's extension and a CSV table (index, angle_deg, dy, dx).",
    )
    p.add_argument("input", help="scan file or folder (raw with flats/darks, or line integrals with --no-normalize)")
    p.add_argument("output", help="aligned stack to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    p.add_argument("--method", default="joint", choices=["joint", "xcorr", "learned"])
    p.add_argument("--center", default=None, help="joint: rotation centre (px) or 'auto' (default: the middle)")
    p.add_argument("--fixed-center", action="store_true", help="joint: keep the centre instead of refining it")
    p.add_argument("--iterations", type=int, default=None, help="joint: iterations per resolution level")
    p.add_argument("--model", default="aligner-moment", help="learned: bundled model name or model file")
    p.add_argument("--shifts", default=None, help="shifts table to write (default: OUTPUT-stem_shifts.csv)")
    p.add_argument("--no-normalize", action="store_true", help="the input already holds line integrals")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("import-tomogan", help="convert the published Keras TomoGAN generator into a model file")
    p.add_argument("keras_h5", help="the published TomoGAN.h5 (Keras)")
    p.add_argument("output", help="model file to write (safetensors + JSON card)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file and card")
    p.set_defaults(func=cmd_import_tomogan)

    p = sub.add_parser(
        "outliers",
        help="score how unusual each slice/sinogram/patch of a stack is; write a CSV table",
        description="Features of every item of a stack (N, h, w), a 2-D map (t-SNE) and outlier scores "
        "(k-NN distance, local outlier factor), or with --reference how far each item falls outside "
        "another stack (e.g. a model's training data). Columns: item, x, y, score, lof, features.",
    )
    p.add_argument("input", help="stack (.npy/.tif/.h5/.zarr), or a scan with --sinograms")
    p.add_argument("--out", required=True, help="CSV table to write")
    p.add_argument("--reference", help="reference stack of the same item shape: score out-of-distribution")
    p.add_argument("--features", default="auto", help="auto, pixels, spectrum, sinogram or model:NAME (default: auto)")
    p.add_argument("--sinograms", action="store_true", help="INPUT is a scan: score its sinograms (one per row)")
    p.add_argument("--method", default="tsne", choices=["tsne", "pca", "umap", "none"], help="2-D map (default: tsne)")
    p.add_argument("--perplexity", type=float, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="how many of the highest scores to print")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_outliers)

    p = sub.add_parser(
        "batch",
        help="run a task over a folder of scans/volumes (resumable; Dask for many machines)",
        usage="tomoml batch TASK IN OUT [task options...] [--workers N] [--scheduler ADDRESS|local:N] [--no-resume]",
        description="Run TASK (reconstruct, denoise, segment, align, outliers) on every entry of the folder IN "
        "(or a quoted glob) into the folder OUT, one output per input, written under a temporary name and "
        "renamed when complete; a rerun skips the finished ones. A failed file is reported and the run goes "
        "on. Exit 0: all ok or skipped; 1: some failed (see OUT/batch-summary.csv); 2: usage error. "
        "'tomoml batch TASK --help' lists the task's options.",
    )
    p.add_argument("task", help="reconstruct, denoise, segment, align or outliers")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_batch)

    from .ptycho._cli import add_ptycho_parser  # tomoml ptycho simulate|train|predict|live

    add_ptycho_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 2 for a reported error)."""
    import logging

    from .errors import TomomlError

    # zarr 3 reads chunks in asyncio tasks: after one fails (reported below as one line) its
    # siblings' exceptions would be logged again at exit as "Task exception was never retrieved"
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args) or 0)
    except TomomlError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        return _error("interrupted")
    except MemoryError:
        return _error("out of memory: try --rows to reconstruct a slab at a time, or another --device")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
