"""A worker thread that runs torch with one intra-op thread, for kernels made of many small ops.

torch runs each CPU op on an OpenMP team that meets at a barrier when the op ends. On a busy
machine a team thread is often not scheduled, and every op waits for it: on a shared 2-vCPU
machine the direct back-projection of one 640² slice (~3000 ops) took 1.5–4 s with torch's two
threads and 0.2–0.4 s with one. Several single-threaded workers were no cure there (0.4–1.9 s with
two): they wait for each other at every handoff of Python's global lock instead. So such kernels
run start to end in one thread with one intra-op thread; large batches keep torch's own threads
(the sparse matrix products).

>>> run_serial(sum, [1, 2, 3])
6
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import torch

_TASKS: queue.SimpleQueue = queue.SimpleQueue()
_STARTED = False
_LOCK = threading.Lock()


def _work(ready: threading.Event) -> None:
    torch.get_num_threads()  # torch's per-thread set-up, which would later undo the next line
    torch.set_num_threads(1)
    ready.set()
    while True:
        fn, args, grad, future = _TASKS.get()
        try:
            with torch.set_grad_enabled(grad):
                future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller, which re-raises it
            future.set_exception(exc)


def _start() -> None:
    global _STARTED
    with _LOCK:
        if _STARTED:
            return
        threads = torch.get_num_threads()
        ready = threading.Event()
        threading.Thread(target=_work, args=(ready,), name="tomoml-recon", daemon=True).start()
        ready.wait()
        # set_num_threads in the worker also set the count that threads started later begin
        # with; give them this thread's count back (this thread's own is unchanged).
        torch.set_num_threads(threads)
        _STARTED = True


def run_serial(fn: Callable, *args):
    """``fn(*args)`` with torch on one thread: here if torch has one, else in the worker thread,
    with this thread's autograd mode (calls from several threads queue up there)."""
    if torch.get_num_threads() == 1:
        return fn(*args)
    _start()
    future: Future = Future()
    _TASKS.put((fn, args, torch.is_grad_enabled(), future))
    return future.result()
