"""``tomoml segment IN OUT``: the registry's ``segment`` task on one image or volume (+ probabilities)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    add_common,
    add_task_arguments,
    check_output,
    not_an_input,
    read_volume,
    show_progress,
    task_options,
    write_volume,
)

ORDER = 30


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import InputError
    from ..progress import run_to_end
    from ..tasks.segment import segment_steps

    out = Path(args.output)
    check_output(out, args.overwrite)
    not_an_input(out, [args.input])
    prob_out = Path(args.probabilities) if args.probabilities else None
    if prob_out is not None:
        if prob_out.suffix.lower() != ".npy":
            raise InputError(f"--probabilities {str(prob_out)!r}: probabilities (classes, z, y, x) are written as .npy")
        check_output(prob_out, args.overwrite)
        not_an_input(prob_out, [args.input, args.output])
    options = task_options("segment", args)
    volume = read_volume(Path(args.input))
    labels, meta = run_to_end(segment_steps(volume, probabilities=prob_out is not None, **options),
                              progress=show_progress(args))
    meta = dict(meta or {})
    meta.setdefault("source", str(args.input))
    if prob_out is not None:
        write_volume(prob_out, labels, overwrite=args.overwrite)
        labels = np.asarray(meta["classes"]["values"], np.uint8)[labels.argmax(0)]
    if labels.ndim == 2 and out.suffix.lower() != ".npy":
        labels = labels[None]
    write_volume(out, labels, overwrite=args.overwrite, metadata=meta)
    print(f"wrote {out} ({' x '.join(map(str, np.shape(labels)))} labels, model {options['model']})"
          + (f" and {prob_out}" if prob_out is not None else ""))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment an image or volume with a U-Net model")
    p.add_argument("input", help="image or volume (.npy/.tif/.h5/.zarr)")
    p.add_argument("output", help="labels to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    add_task_arguments(p, "segment")
    p.add_argument("--probabilities", help="also write per-class probabilities (classes, ...) to this .npy")
    add_common(p)
    p.set_defaults(func=cmd_segment)
