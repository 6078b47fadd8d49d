"""``tomoml``: the command line for batch jobs (no napari, no Qt).

    tomoml info SCAN
    tomoml reconstruct SCAN OUT [--algorithm fbp|sirt|cgls|tv] [--center C|auto] [--filter ramp]
                                [--rows A:B] [--n-iter N] [--device auto] [--overwrite]
    tomoml denoise VOLUME OUT [--model NAME|PATH] [--device auto] [--overwrite]
    tomoml train tomogan OUT (--pairs PAIRS.h5 | --noisy VOL --clean VOL) [--steps N] ...
    tomoml import-tomogan KERAS_H5 OUT
    tomoml outliers IN --out TABLE.csv [--reference REF] [--features sinogram] [--sinograms]

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


def _parse_memory(text: str | None) -> int:
    """``--memory``: a size like 1GiB; by default half the memory free now."""
    if text is None:
        import psutil

        return psutil.virtual_memory().available // 2
    from .errors import InputError
    from .tasks.reconstruct import parse_memory

    try:
        return parse_memory(text)
    except InputError as exc:
        raise InputError(f"--{exc}") from None


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

        denoised, _ = run_to_end(denoise_steps(volume, model=args.model, device=args.device, out=open_out),
                                 progress=_progress(args))
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
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_denoise)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 2 for a reported error)."""
    from .errors import TomomlError

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
