"""``tomoml import-tomogan KERAS_H5 OUT``: the published Keras TomoGAN generator as a model file."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 60


def cmd_import_tomogan(args: argparse.Namespace) -> int:
    from .. import import_tomogan_keras

    path = import_tomogan_keras(Path(args.keras_h5), Path(args.output), overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0



def add_parser(sub) -> None:
    p = sub.add_parser("import-tomogan", help="convert the published Keras TomoGAN generator into a model file")
    p.add_argument("keras_h5", help="the published TomoGAN.h5 (Keras)")
    p.add_argument("output", help="model file to write (safetensors + JSON card)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file and card")
    p.set_defaults(func=cmd_import_tomogan)
