"""``tomoml reconstruct SCAN OUT``: the registry's ``reconstruct`` task on one scan, plus the
single-scan extras (``--rows``, ``--zinger``, ``--phase``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import (
    add_common,
    add_task_arguments,
    check_output,
    jsonable,
    parse_center,
    parse_rows,
    show_progress,
)

ORDER = 10


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from ._common import task_options

    out = Path(args.output)
    check_output(out, args.overwrite, [args.input])  # cheap checks first: fail before reading anything
    rows = parse_rows(args.rows)
    options = task_options("reconstruct", args)
    center = parse_center(options["center"])

    from contextlib import ExitStack

    from ..errors import InputError
    from ..io import load_scan
    from ..io.writers import open_volume
    from ..progress import run_to_end
    from ..tasks.reconstruct import reconstruct_scan_steps
    from ..tasks.registry import memory_budget

    max_memory = memory_budget(options["memory"])
    scan = load_scan(Path(args.input))
    if rows is not None:
        start, stop, _ = rows.indices(scan.shape[1])
        if stop <= start:
            raise InputError(f"--rows {args.rows}: no rows selected (the scan has {scan.shape[1]})")
    prepare: dict[str, Any] = {}
    if args.phase:
        from ..recon.phase import parse_phase_option

        prepare["phase"] = parse_phase_option(args.phase, scan.metadata)
    if center is None and scan.metadata.get("center") is not None:
        center = float(scan.metadata["center"])  # the file's own value
    algo: dict[str, Any] = {k: options[k] for k in ("algorithm", "filter_name", "device")}
    if options["n_iter"] is not None:
        algo["n_iter"] = options["n_iter"]
    metadata = {"flats": scan.flats, "darks": scan.darks, "zinger_threshold": args.zinger}

    with ExitStack() as stack:
        def open_out(shape, meta):  # the file is opened once the shape and provenance are known
            meta = dict(meta, source=str(args.input))
            if args.phase:
                meta["phase"] = {"method": "paganin", **prepare["phase"]}
            return stack.enter_context(open_volume(out, shape, overwrite=args.overwrite, inputs=[args.input],
                                                   metadata=jsonable(meta)))

        steps = reconstruct_scan_steps(scan.projections, scan.theta, open_out, metadata=metadata,
                                       raw=not options["line_integrals"], rows=rows, center=center, prepare=prepare,
                                       max_memory=max_memory, **algo)
        volume, meta = run_to_end(steps, progress=show_progress(args))
    c = meta.get("center")
    if center == "auto":
        print(f"rotation centre (found): {c:.2f} px", file=sys.stderr)
    c_text = f", centre {c:.2f} px" if isinstance(c, (int, float)) else ""
    print(f"wrote {out} ({' x '.join(map(str, volume.shape))} {options['algorithm']}{c_text})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="normalise a scan and reconstruct a volume",
        description="Load a scan, normalise it with its flats/darks (−log), reconstruct, and write "
        "the volume by the output's extension (.tif/.tiff/.h5/.hdf5/.zarr/.npy).",
    )
    p.add_argument("input", help="scan file or folder")
    p.add_argument("output", help="volume to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    add_task_arguments(p, "reconstruct")
    p.add_argument("--rows", default=None, help="detector rows START:STOP to reconstruct (default: all)")
    p.add_argument("--zinger", type=float, default=None, help="remove zingers above this threshold")
    p.add_argument("--phase", default=None, metavar="delta_beta=D,distance_mm=Z,energy_kev=E[,pixel_size_um=P]",
                   help="Paganin phase retrieval before reconstructing (pixel size: from the file if it has one)")
    add_common(p)
    p.set_defaults(func=cmd_reconstruct)
