"""``tomoml info SCAN``: a scan's summary (shape, angles, flats/darks)."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..io import load_scan

    print(load_scan(Path(args.path)).summary())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a summary of a scan (shape, angles, flats/darks)")
    p.add_argument("path", help="scan file or folder (.h5/.hdf5/.nxs/.npy/.zarr/.tif or a TIFF folder)")
    p.set_defaults(func=cmd_info)
