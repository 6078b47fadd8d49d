"""``tomoml denoise VOLUME OUT``: the registry's ``denoise`` task on one volume."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    add_common,
    add_task_arguments,
    check_output,
    jsonable,
    parse_rows,
    read_volume,
    show_progress,
    task_options,
)

ORDER = 20


def cmd_denoise(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from ..errors import InputError
    from ..io.writers import open_volume
    from ..progress import run_to_end
    from ..tasks.denoise import denoise_steps

    out = Path(args.output)
    check_output(out, args.overwrite, [args.input])
    options = task_options("denoise", args)
    rows = parse_rows(args.rows)
    volume = read_volume(Path(args.input))
    if rows is not None:  # a band of slices, still lazy: read one window at a time like the whole
        start, stop, _ = rows.indices(volume.shape[0])
        if stop <= start:
            raise InputError(f"--rows {args.rows}: no slices selected (the volume has {volume.shape[0]})")
        volume = volume[start:stop]
    with ExitStack() as stack:
        def open_out(shape, meta):  # each slice is written as it is denoised: memory stays bounded
            meta = dict(meta, source=str(args.input))
            return stack.enter_context(open_volume(out, shape, overwrite=args.overwrite, inputs=[args.input],
                                                   metadata=jsonable(meta)))

        denoised, _ = run_to_end(denoise_steps(volume, out=open_out, **options), progress=show_progress(args))
    print(f"wrote {out} ({' x '.join(map(str, denoised.shape))}, model {options['model']})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("denoise", help="denoise a reconstructed volume with a trained model")
    p.add_argument("input", help="volume (.npy/.tif/.h5/.zarr)")
    p.add_argument("output", help="volume to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    add_task_arguments(p, "denoise")
    p.add_argument("--rows", default=None, help="slices START:STOP to denoise (default: all); the band is denoised "
                   "as a volume of its own (its end slices mirrored, its own normalisation)")
    add_common(p)
    p.set_defaults(func=cmd_denoise)
