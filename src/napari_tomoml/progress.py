"""One progress / cancel contract for every task.

A long task is written as a generator (``*_steps``) that yields :class:`Progress` and
``return``s its result. The napari widgets run that generator in a ``thread_worker`` (cancel
happens at a ``yield``); scripts and the CLI call the plain function, which drives the generator
to its end with :func:`run_to_end`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long task: ``done`` of ``total`` units, a message, optional live data.

    ``data`` carries what a live view may want (a preview slice, the latest losses).
    """

    done: int
    total: int
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressArg = Callable[[Progress], Any] | str | bool | None


def _tqdm_reporter() -> Callable[[Progress], None]:
    from tqdm.auto import tqdm

    bar: dict[str, Any] = {}

    def report(p: Progress) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=p.total, file=sys.stderr, leave=False)
        b = bar["bar"]
        b.total = p.total
        b.n = p.done
        b.set_description(p.message, refresh=False)
        b.refresh()
        if p.done >= p.total:
            b.close()

    return report


def run_to_end(steps: Generator[Progress, None, T], progress: ProgressArg = None) -> T:
    """Drive a ``*_steps`` generator to its end and return its result.

    ``progress`` is ``None``/``False`` (silent), ``True`` or ``"tqdm"`` (a terminal bar), or a
    callable that receives each :class:`Progress`.

    >>> def steps():
    ...     yield Progress(1, 1, "only step")
    ...     return 42
    >>> run_to_end(steps())
    42
    """
    if progress is True or progress == "tqdm":
        report: Callable[[Progress], Any] | None = _tqdm_reporter()
    elif callable(progress):
        report = progress
    else:
        report = None
    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            return stop.value
        if report is not None:
            report(item)
