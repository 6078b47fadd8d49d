"""What the ``tomoml`` commands share: argument parsing, output checks, reading volumes (no Qt)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_ERROR = 2
VOLUME_SUFFIXES = (".tif", ".tiff", ".h5", ".hdf5", ".zarr", ".npy")


def error(message: str) -> int:
    print(f"tomoml: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def task_options(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every option of registry task ``task`` but ``format`` (the output's extension decides it):
    from the command line where given, else its declared default, checked (a bad value is one
    :class:`InputError` naming it)."""
    from ..tasks.registry import get_task

    spec = get_task(task)
    options = spec.resolve(spec.options_from_args(args))
    options.pop("format", None)
    return options


def add_task_arguments(parser: argparse.ArgumentParser, task: str, exclude: tuple[str, ...] = ("format",)) -> None:
    """The registry task's options (its declaration is their one source); ``format`` is the output's extension."""
    from ..tasks.registry import get_task

    get_task(task).add_arguments(parser, exclude=exclude)


def add_common(parser: argparse.ArgumentParser, overwrite: str = "replace OUTPUT if it exists") -> None:
    parser.add_argument("--overwrite", action="store_true", help=overwrite)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def parse_rows(text: str | None) -> slice | None:
    """``"a:b"`` → ``slice(a, b)`` (either side may be empty); ``None`` → all rows."""
    from ..errors import InputError

    if text is None or text in ("", ":"):
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise InputError(f"--rows {text!r}: expected START:STOP, e.g. 100:200 (or 100: or :200)")
    try:
        start = int(parts[0]) if parts[0].strip() else None
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise InputError(f"--rows {text!r}: START and STOP must be whole numbers") from None
    if start is not None and stop is not None and stop <= start:
        raise InputError(f"--rows {text!r}: STOP must be larger than START")
    return slice(start, stop)


def parse_center(text: str | None) -> float | str | None:
    from ..errors import InputError

    if text is None or text.lower() == "auto":
        return "auto" if text is not None else None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--center {text!r}: give a number of detector pixels or 'auto'") from None


def check_output(out: Path, overwrite: bool, inputs: Sequence[Any] = ()) -> None:
    """Fail before any work: unknown format, existing output, output = input, unwritable folder."""
    from ..errors import InputError
    from ..io.writers import check_output as check

    if out.suffix.lower() not in VOLUME_SUFFIXES:
        raise InputError(
            f"output {str(out)!r}: unknown format {out.suffix or '(no extension)'!r}; "
            f"use one of {', '.join(VOLUME_SUFFIXES)}"
        )
    check(out, overwrite=overwrite, inputs=inputs)


def not_an_input(out: Path, inputs: list) -> None:
    from ..errors import InputError

    for source in inputs:
        if source and Path(source).resolve() == out.resolve():
            raise InputError(f"output {str(out)!r} is an input; write the result under another name")


def jsonable(meta: dict) -> dict:
    from .._writer import jsonable as convert  # Qt-free

    return convert(meta)


def write_volume(out: Path, volume: Any, *, overwrite: bool = False, metadata: dict | None = None,
                 inputs: Sequence[Any] = ()) -> Path:
    """Write ``volume`` by the extension of ``out`` (.tif/.tiff/.h5/.hdf5/.zarr/.npy), atomically."""
    from ..io.writers import write_volume as write

    check_output(out, overwrite, inputs)
    return write(out, volume, overwrite=overwrite, inputs=inputs,
                 metadata=None if metadata is None else jsonable(metadata))


def show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet


def read_volume(path: Path):
    """A volume (z, y, x) from .npy, a TIFF stack, HDF5 (/exchange/data) or zarr (the first array)."""
    import numpy as np

    from ..io import load_scan

    if path.suffix.lower() == ".npy" and path.is_file():
        from ..errors import ScanReadError

        from ..tasks.registry import lazy_volume

        try:
            return lazy_volume(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError, EOFError) as exc:
            raise ScanReadError(f"{path}: not a readable .npy file, corrupt or truncated? ({exc})") from None
    return load_scan(path).projections  # the io readers treat any 3-D stack alike
