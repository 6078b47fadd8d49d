"""``tomoml align SCAN OUT``: the registry's ``align`` task on one scan, writing the aligned stack
as well as the shifts table (``--shifts``), with the joint/learned methods' own options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import (
    add_common,
    add_task_arguments,
    check_output,
    parse_center,
    show_progress,
    task_options,
    write_volume,
)

ORDER = 50


def cmd_align(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import load_scan
    from ..io.writers import check_output as check_table
    from ..prep import normalize
    from ..progress import run_to_end
    from ..tasks.align import align_steps, apply_shifts
    from ..tasks.embed import write_table_csv

    out = Path(args.output)
    check_output(out, args.overwrite, [args.input])
    table = Path(args.shifts) if args.shifts else out.with_name(out.name.split(".")[0] + "_shifts.csv")
    check_table(table, overwrite=args.overwrite, inputs=[args.input])
    task = task_options("align", args)
    method, device = task["method"], task["device"]
    scan = load_scan(Path(args.input))
    if args.no_normalize:
        proj = np.asarray(scan.projections, dtype=np.float32)
    else:
        proj = normalize(scan.projections, scan.flats, scan.darks)
    options: dict[str, Any] = {}
    if method == "learned":
        options["model"] = args.model
    if method == "joint":
        options["refine_center"] = not args.fixed_center
        if args.iterations is not None:
            options["iterations"] = args.iterations
    center = parse_center(task["center"]) if method == "joint" else None
    shifts, meta = run_to_end(
        align_steps(proj, scan.theta, method=method, center=center, device=device, **options),
        progress=show_progress(args),
    )
    aligned = apply_shifts(proj, shifts, device=device)
    meta = {k: v for k, v in meta.items() if k not in ("card", "updates")}
    meta["source"] = str(args.input)
    write_volume(out, aligned, overwrite=args.overwrite, metadata=meta, inputs=[args.input])
    write_table_csv({"index": np.arange(len(shifts)), "angle_deg": np.degrees(np.asarray(scan.theta)),
                     "dy": shifts[:, 0], "dx": shifts[:, 1]}, table, overwrite=args.overwrite)
    extra = f", refined centre {meta['center_refined']:.2f} px" if "center_refined" in meta else ""
    print(f"wrote {out} and {table} ({method}, {meta['seconds']:.1f} s, "
          f"max |dx| {np.abs(shifts[:, 1]).max():.2f} px, max |dy| {np.abs(shifts[:, 0]).max():.2f} px{extra})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "align",
        help="align a misaligned projection stack (write the aligned stack and a shifts table)",
        description="Estimate per-projection shifts (dy, dx; measured = shift(aligned, (dy, dx))), undo "
        "them, write the aligned stack by the output's extension and a CSV table (index, angle_deg, dy, dx).",
    )
    p.add_argument("input", help="scan file or folder (raw with flats/darks, or line integrals with --no-normalize)")
    p.add_argument("output", help="aligned stack to write (.tif, .tiff, .h5, .hdf5, .zarr, .npy)")
    add_task_arguments(p, "align")
    p.add_argument("--fixed-center", action="store_true", help="joint: keep the centre instead of refining it")
    p.add_argument("--iterations", type=int, default=None, help="joint: iterations per resolution level")
    p.add_argument("--model", default="aligner-moment", help="learned: bundled model name or model file")
    p.add_argument("--shifts", default=None, help="shifts table to write (default: OUTPUT-stem_shifts.csv)")
    p.add_argument("--no-normalize", action="store_true", help="the input already holds line integrals")
    add_common(p)
    p.set_defaults(func=cmd_align)
