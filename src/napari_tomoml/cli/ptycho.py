"""``tomoml ptycho simulate|train|predict|live``: declared in :mod:`napari_tomoml.ptycho._cli`."""

from __future__ import annotations

ORDER = 90


def add_parser(sub) -> None:
    from ..ptycho._cli import add_ptycho_parser

    add_ptycho_parser(sub)
