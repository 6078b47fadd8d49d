"""``tomoml outliers IN --out TABLE.csv``: the registry's ``outliers`` task on one stack, with a
reference stack (out-of-distribution scores) or a scan's sinograms."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_common, add_task_arguments, read_volume, show_progress, task_options

ORDER = 70


def _read_stack(path: Path, sinograms: bool):
    """Items to score from a file: its first axis, or (``sinograms``) the sinograms of a scan."""
    import numpy as np

    from ..io import load_scan

    if not sinograms:
        return read_volume(path), None
    scan = load_scan(path)
    return np.moveaxis(scan.projections, 1, 0), scan.theta  # (rows, angles, cols); dask stays lazy


def cmd_outliers(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.writers import check_output
    from ..progress import run_to_end
    from ..tasks.embed import outlier_table_steps, write_table_csv

    inputs = [args.input] + ([args.reference] if args.reference else [])
    out = check_output(Path(args.out), overwrite=args.overwrite, inputs=inputs)
    options = task_options("outliers", args)
    stack, theta = _read_stack(Path(args.input), args.sinograms)
    reference = _read_stack(Path(args.reference), args.sinograms)[0] if args.reference else None
    method = options.pop("method")
    columns = run_to_end(outlier_table_steps(stack, method=None if method == "none" else method, reference=reference,
                                             theta=theta, **options), progress=show_progress(args))
    write_table_csv(columns, out, overwrite=args.overwrite)
    top = np.argsort(-columns["score"])[: args.top]
    what = "outside the reference" if reference is not None else "most unusual"
    print(f"wrote {out} ({len(columns['score'])} items); {what}: "
          + ", ".join(f"{i} ({columns['score'][i]:.3g})" for i in top))
    return 0


def add_parser(sub) -> None:
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
    p.add_argument("--sinograms", action="store_true", help="INPUT is a scan: score its sinograms (one per row)")
    add_task_arguments(p, "outliers")
    p.add_argument("--top", type=int, default=10, help="how many of the highest scores to print")
    add_common(p)
    p.set_defaults(func=cmd_outliers)
