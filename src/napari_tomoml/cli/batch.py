"""``tomoml batch TASK IN OUT``: any registry task over a folder, a glob or a list (resumable; Dask)."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 80


def cmd_batch(args: argparse.Namespace) -> int:
    """Options after TASK come from the task registry; argparse errors there are one-line usage errors."""
    from ..errors import InputError
    from ..progress import run_to_end
    from ..tasks.batch import SUMMARY_NAME, batch_steps
    from ..tasks.registry import get_task

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
    p.add_argument("--chunk-rows", type=int, default=None, help="one input of reconstruct/denoise: rows per Dask "
                   "task (default with --workers/--scheduler: about four slabs per worker); slabs resume one by one")
    p.add_argument("--no-resume", action="store_true", help="compute again the inputs whose output exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    opts = p.parse_args(args.rest)
    steps = batch_steps(spec, opts.input, opts.output, options=spec.options_from_args(opts),
                        resume=not opts.no_resume, workers=opts.workers, scheduler=opts.scheduler,
                        chunk_rows=opts.chunk_rows)
    summary = run_to_end(steps, progress=not opts.quiet)
    counts = summary.counts()
    print(f"batch {spec.name}: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("ok", "skipped", "failed"))
          + f"; summary in {Path(opts.output) / SUMMARY_NAME}")
    for row in summary.failed:
        print(f"  failed: {Path(row['input']).name}: {row['error']}")
    return 1 if summary.failed else 0


def add_parser(sub) -> None:
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
