"""``tomoml``: the command line for batch jobs (no napari, no Qt).

    tomoml info SCAN
    tomoml reconstruct SCAN OUT [--algorithm fbp|sirt|cgls|tv] [--center C|auto] [--filter ramp]
                                [--rows A:B] [--n-iter N] [--device auto] [--memory 1GiB] [--overwrite]
    tomoml denoise VOLUME OUT [--model NAME|PATH] [--tile N] [--batch N] [--device auto] [--overwrite]
    tomoml segment IN OUT [--model NAME|PATH] [--tile N] [--probabilities PROB.npy]
    tomoml train tomogan OUT (--pairs PAIRS.h5 | --noisy VOL --clean VOL) [--steps N] ...
    tomoml train unet OUT --image IMG --labels LABELS [--sparse] [--steps N] ...
    tomoml align SCAN OUT [--method joint|xcorr|learned] [--center C|auto] [--shifts TABLE.csv]
    tomoml import-tomogan KERAS_H5 OUT [--overwrite]
    tomoml outliers IN --out TABLE.csv [--reference REF] [--features sinogram] [--sinograms]
    tomoml batch TASK IN OUT [task options] [--workers N] [--scheduler ADDRESS|local:N]
    tomoml ptycho simulate|train|predict|live ...

Each command is a module of this package with an ``add_parser(subparsers)`` function (and an
``ORDER`` for the help listing); :func:`build_parser` finds them, so a new command is a new
module. The options of a registered task (:mod:`napari_tomoml.tasks.registry`: reconstruct,
denoise, segment, align, outliers) come from its declaration, the same one the batch runner and
the widgets read, so their names and defaults are spelled once. Every command drives the same
``*_steps`` generators as the napari widgets, with a progress bar on stderr. A
:class:`~napari_tomoml.errors.TomomlError` is printed as ``tomoml: error: ...`` and the exit
code is 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# helpers scripts and tests use as ``cli.parse_rows`` etc.
from ._common import EXIT_ERROR, VOLUME_SUFFIXES, parse_center, parse_rows, write_volume  # noqa: F401


def _command_modules() -> list:
    import importlib
    import pkgutil

    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)
               if not info.name.startswith("_")]
    modules = [m for m in modules if hasattr(m, "add_parser")]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    """The ``tomoml`` parser: one subcommand per command module of this package."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="tomoml",
        description="Machine-learning methods for X-ray tomography: read, reconstruct, denoise.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 2 for a reported error)."""
    import logging

    from ..errors import TomomlError
    from ._common import error

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
        return error(str(exc))
    except KeyboardInterrupt:
        return error("interrupted")
    except MemoryError:
        return error("out of memory: try --rows to reconstruct a slab at a time, or another --device")
