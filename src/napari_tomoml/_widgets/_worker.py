"""The one bridge between a ``*_steps`` generator and the napari GUI.

Every widget runs its long work through a :class:`TaskRunner`: the generator runs in a napari
generator ``thread_worker`` (so the GUI never freezes), each yielded
:class:`~napari_tomoml.progress.Progress` moves a progress bar, the returned value goes to a
callback on the GUI thread, a :class:`~napari_tomoml.errors.TomomlError` becomes a napari
notification (never a traceback dialog), and the Cancel button calls ``worker.quit()``, which
stops the generator at its next ``yield``.

Exceptions are caught inside the worker thread and handed back as a value, for two reasons:
napari's own error relay shows a traceback, and superqt silently swallows a ``RuntimeError``
raised inside a generator worker (torch raises those), which would leave the widget "busy".
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..errors import Cancelled, TomomlError
from ..progress import Progress

log = logging.getLogger(__name__)


@dataclass
class _Failure:
    """An exception raised inside the worker, carried back to the GUI thread as a value."""

    error: BaseException
    trace: str


def error_message(exc: BaseException) -> str:
    """The text a person sees for ``exc``: our own errors as they are, others with their type."""
    if isinstance(exc, TomomlError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory: try fewer rows (a smaller slab), a smaller volume, or another device"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _guarded(func: Callable[..., Any], args: tuple, kwargs: dict):
    """Run ``func`` (a ``*_steps`` generator function or a plain function) as a generator.

    Yields whatever the task yields and returns its result, or a :class:`_Failure`.
    """
    try:
        steps = func(*args, **kwargs)
        if inspect.isgenerator(steps):
            result = yield from steps
        else:
            result = steps
    except Exception as exc:  # reported on the GUI thread, see module docstring
        return _Failure(exc, traceback.format_exc())
    return result


def alive(obj: Any) -> bool:
    """False once the C++ side of a Qt object is gone (a closed dock widget)."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


def run_quiet(
    func: Callable[..., Any],
    *args: Any,
    on_result: Callable[[Any], Any],
    on_error: Callable[[BaseException], Any] | None = None,
    on_finish: Callable[[], Any] | None = None,
    owner: Any = None,
    **kwargs: Any,
):
    """Run a small task (a live preview) in a worker with no progress UI; returns the worker.

    Failures go to ``on_error`` (a status line), not to notifications: a preview that fails
    while someone drags a slider must not flood the screen. Callbacks are skipped once
    ``owner`` (the widget) has been deleted, e.g. its dock closed while the preview ran.
    """

    def _returned(value: Any) -> None:
        if owner is not None and not alive(owner):
            return
        if isinstance(value, _Failure):
            if not isinstance(value.error, TomomlError):
                log.warning("napari-tomoml preview failed:\n%s", value.trace)
            if on_error is not None:
                on_error(value.error)
        else:
            on_result(value)

    worker = create_worker(_guarded, func, args, kwargs, _start_thread=False)
    worker.returned.connect(_returned)
    if on_finish is not None:

        def _finished() -> None:
            if owner is None or alive(owner):
                on_finish()

        worker.finished.connect(_finished)
    worker.start()
    return worker


class TaskRunner(QWidget):
    """A progress bar, a status line and a Cancel button that run one task at a time.

    ``done`` is emitted after the callbacks ran, with ``"ok"``, ``"error"`` or ``"cancelled"``.
    """

    done = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, cancel_text: str = "Cancel") -> None:
        super().__init__(parent)
        self.worker = None
        self._callbacks: dict[str, Callable | None] = {}
        self._label = QLabel("")
        self._label.setWordWrap(True)
        self._bar = QProgressBar()
        self._bar.setRange(0, 1)
        self._bar.setValue(0)
        self._bar.setTextVisible(False)  # no "0%" while idle
        self.cancel_button = QPushButton(cancel_text)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self._bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self._label)
        self.last_status: str | None = None

    # ------------------------------------------------------------------ public API
    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def status_text(self) -> str:
        return self._label.text()

    @property
    def progress_value(self) -> tuple[int, int]:
        return self._bar.value(), self._bar.maximum()

    def run(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], Any] | None = None,
        on_progress: Callable[[Progress], Any] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        on_finish: Callable[[str], Any] | None = None,
        on_cancel: Callable[[], Any] | None = None,
        description: str = "",
        **kwargs: Any,
    ):
        """Start ``func(*args, **kwargs)`` in a worker thread and return the worker.

        ``func`` is normally a ``*_steps`` generator function; a plain function also works (it
        then has no intermediate progress and can only be cancelled before it starts).
        ``on_cancel`` replaces the default cancel (``worker.quit()``, which drops the result):
        a task that should stop *and still return* (training keeps its best weights) gets a
        stop flag set here and finishes normally.
        Raises :class:`TomomlError` if a task is already running.
        """
        if self.running:
            raise TomomlError("a task is already running: wait for it or press Cancel")
        self._callbacks = {
            "result": on_result,
            "progress": on_progress,
            "error": on_error,
            "finish": on_finish,
            "cancel": on_cancel,
        }
        self._bar.setRange(0, 0)  # busy until the first Progress arrives
        self._bar.setTextVisible(True)
        self._label.setText(f"{description}…" if description else "working…")
        self.last_status = None
        worker = create_worker(_guarded, func, args, kwargs, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)  # only if _guarded itself failed
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.cancel_button.setEnabled(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running task to stop at its next progress step."""
        if self.worker is not None:
            self._label.setText("stopping…")
            self.cancel_button.setEnabled(False)
            custom = self._callbacks.get("cancel")
            if custom is not None:
                custom()
            else:
                self.worker.quit()

    # ------------------------------------------------------------------ worker slots
    def _on_yielded(self, item: Any) -> None:
        if isinstance(item, Progress):
            total = max(int(item.total), 1)
            self._bar.setRange(0, total)
            self._bar.setValue(min(int(item.done), total))
            if item.message:
                self._label.setText(f"{item.message} ({item.done}/{item.total})")
        cb = self._callbacks.get("progress")
        if cb is not None and isinstance(item, Progress):
            cb(item)

    def _on_returned(self, value: Any) -> None:
        if isinstance(value, _Failure):
            self._fail(value.error, value.trace)
            return
        self.last_status = "ok"
        self._bar.setRange(0, 1)
        self._bar.setValue(1)
        self._label.setText("done")
        cb = self._callbacks.get("result")
        if cb is not None:
            try:
                cb(value)
            except Exception as exc:  # adding layers failed: report, don't crash the GUI
                self._fail(exc, traceback.format_exc())

    def _on_errored(self, exc: BaseException) -> None:  # pragma: no cover - defensive
        self._fail(exc, "".join(traceback.format_exception(exc)))

    def _fail(self, exc: BaseException, trace: str) -> None:
        if isinstance(exc, Cancelled):
            self._on_aborted()
            return
        self.last_status = "error"
        if not isinstance(exc, TomomlError):
            log.error("napari-tomoml task failed:\n%s", trace)
        message = error_message(exc)
        self._bar.setRange(0, 1)
        self._bar.setValue(0)
        self._label.setText(f"failed: {message}")
        show_error(message)
        cb = self._callbacks.get("error")
        if cb is not None:
            cb(exc)

    def _on_aborted(self) -> None:
        self.last_status = "cancelled"
        self._bar.setRange(0, 1)
        self._bar.setValue(0)
        self._label.setText("cancelled")
        show_info("napari-tomoml: task cancelled")

    def _on_finished(self) -> None:
        self.worker = None
        self.cancel_button.setEnabled(False)
        status = self.last_status or "cancelled"
        cb = self._callbacks.get("finish")
        self._callbacks = {}
        if cb is not None:
            cb(status)
        self.done.emit(status)
