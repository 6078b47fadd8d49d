"""Run one registered task over many files: a folder, a glob or a list; resumable; on Dask.

Each output is written under a temporary name and renamed when complete
(:func:`~napari_tomoml.io.writers.atomic_output`), so an output that exists is a finished one:
``resume`` skips exactly those, and a run killed at any moment (even ``kill -9``) is continued
by running it again. A file that fails is logged with its message and the run goes on. No
output may be an input. The table of what happened (input, output, status, seconds, error) is
returned and written, atomically too, as ``OUT/batch-summary.csv``.

With ``workers > 1`` or ``scheduler=`` the files become tasks of a ``dask.distributed`` cluster
(``"local:N"`` starts N worker processes here; an address joins a running scheduler, e.g. one
started by dask-jobqueue on SLURM/PBS, see docs/batch.md); each worker process gets its share
of the cores as torch threads so the workers do not oversubscribe the machine.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import re
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import Cancelled, InputError, OutputError, TomomlError
from ..progress import Progress, ProgressArg, run_to_end
from .chunked import CHUNKED_TASKS, chunk_bounds
from .registry import TaskSpec, get_task

log = logging.getLogger(__name__)

SUMMARY_NAME = "batch-summary.csv"
COLUMNS = ("input", "output", "status", "seconds", "error")
_GLOB_CHARS = re.compile(r"[*?\[]")


class BatchSummary:
    """The table a batch run returns: one row (a dict of :data:`COLUMNS`) per input, in input order.

    ``summary[i]`` is a row, ``summary["status"]`` a column; ``failed`` lists the failed rows.
    """

    def __init__(self, rows: Iterable[dict[str, Any]]):
        self.rows = [dict(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, key: int | str) -> Any:
        return [r[key] for r in self.rows] if isinstance(key, str) else self.rows[key]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for r in self.rows:
            found[r["status"]] = found.get(r["status"], 0) + 1
        return found

    def __repr__(self) -> str:
        return f"BatchSummary({len(self)} files: {self.counts()})"

    def write_csv(self, path: str | Path) -> Path:
        """Write the table as CSV through the one atomic-output helper (replacing an old summary)."""
        from ..io.writers import atomic_output

        with atomic_output(path, overwrite=True) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows({k: ("" if r[k] is None else r[k]) for k in COLUMNS} for r in self.rows)
        return Path(path)


def read_summary(path: str | Path) -> BatchSummary:
    """A summary written by :meth:`BatchSummary.write_csv`, read back (seconds as floats)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["seconds"] = float(r["seconds"]) if r["seconds"] else 0.0
    return BatchSummary(rows)


# ---------------------------------------------------------------------------- planning (no work done)
def find_inputs(inputs: str | Path | Iterable[str | Path], *, exclude: Iterable[Path] = ()) -> list[Path]:
    """The files a batch runs on, in a stable (natural) order.

    A folder gives its visible entries (files, ``.zarr`` stores and TIFF-folder scans alike; a
    ``.zarr`` folder itself is one input); a pattern with ``*?[`` gives its matches; a list is
    taken as it is. Hidden names (temporary outputs) and batch summaries are left out.

    >>> find_inputs("/no/such/folder")
    Traceback (most recent call last):
    ...
    napari_tomoml.errors.InputError: inputs /no/such/folder: no such file or folder
    """
    from ..io.tiff import natural_key

    skip = {_resolved(p) for p in exclude}
    if isinstance(inputs, (str, Path)):
        text = str(Path(inputs).expanduser()) if isinstance(inputs, Path) else os.path.expanduser(inputs)
        path = Path(text)
        if path.is_dir() and path.suffix.lower() != ".zarr":
            found = [p for p in path.iterdir() if _visible(p)]
            where = f"the folder {path} has no files to run on"
        elif _GLOB_CHARS.search(text) and not path.exists():
            found = [Path(p) for p in glob.glob(text) if _visible(Path(p))]
            where = f"the pattern {text!r} matched no files"
        elif path.exists():
            found, where = [path], ""
        else:
            raise InputError(f"inputs {text}: no such file or folder")
        found = sorted((p for p in found if _resolved(p) not in skip), key=lambda p: natural_key(p.name))
        if not found:
            raise InputError(where)
        return found
    found = [Path(p).expanduser() for p in inputs]
    if not found:
        raise InputError("inputs: the list of files is empty")
    return found


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and not path.name.startswith(Path(SUMMARY_NAME).stem)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def plan_outputs(spec: TaskSpec, sources: list[Path], out_dir: Path, options: dict[str, Any]) -> list[Path]:
    """One output per input in ``out_dir``: the input's stem + the task's suffix (the full name where
    two inputs share a stem). Refuses before any work an output that would be an input."""
    from ..io.writers import check_output

    suffix = spec.output_suffix(options)
    stems = [p.name[: -len(p.suffix)] if p.suffix else p.name for p in sources]
    outputs = [out_dir / ((stem if stems.count(stem) == 1 else p.name.replace(".", "_")) + suffix)
               for stem, p in zip(stems, sources, strict=True)]
    if len(set(outputs)) != len(outputs):
        raise InputError("two inputs have the same name; give them different names or run them separately")
    for out in outputs + [out_dir / SUMMARY_NAME]:
        check_output(out, overwrite=True, inputs=sources)  # never an input, always a writable folder
    return outputs


def parse_scheduler(scheduler: str | None, workers: int) -> str | int | None:
    """``None`` (in this process), a number of local worker processes, or a scheduler address."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers={workers!r}: give a whole number of worker processes, at least 1")
    if scheduler is None or scheduler == "":
        return workers if workers > 1 else None
    if workers > 1:
        raise InputError("give either workers (local processes) or scheduler (a Dask cluster), not both")
    text = str(scheduler).strip()
    if text.lower().startswith("local:"):
        n = text.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise InputError(f"scheduler {text!r}: write local:N with N worker processes, e.g. local:4")
        return int(n)
    if not re.fullmatch(r"([a-z]+://)?[\w.\-\[\]:]+:\d+", text):
        raise InputError(f"scheduler {text!r}: give a Dask scheduler address like tcp://host:8786, or local:N")
    return text


# ---------------------------------------------------------------------------- one file
def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TomomlError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory: lower the task's memory option or run fewer workers"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _row(source: Path, output: Path, status: str, seconds: float = 0.0, error: str = "") -> dict[str, Any]:
    return {"input": str(source), "output": str(output), "status": status, "seconds": round(seconds, 3),
            "error": error}


def file_steps(spec: TaskSpec, source: Path, output: Path, options: dict[str, Any], *, resume: bool = True
               ) -> Generator[Progress, None, dict[str, Any]]:
    """Run ``spec`` on one file; returns its summary row (a failure is a row, not an exception).

    Closing the generator (cancel) stops the task at its next progress step; the partial output
    is removed by the atomic writer, so the file is simply not done.
    """
    from ..io.writers import clean_leftovers

    clean_leftovers(output)  # temporaries of a killed run, and a folder output moved aside
    if output.exists():
        if resume:
            return _row(source, output, "skipped")
        _remove(output)  # recompute: the old output is this batch's own, never an input (plan_outputs)
    start = time.perf_counter()
    try:
        if not source.exists():
            raise InputError(f"{source}: no such file or folder")
        yield from spec.run(source, output, options)
    except Exception as exc:  # one file's failure must not stop the batch; it goes in the summary
        log.warning("batch %s: %s failed: %s", spec.name, source, _error_text(exc))
        return _row(source, output, "failed", time.perf_counter() - start, _error_text(exc))
    return _row(source, output, "ok", time.perf_counter() - start)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _set_threads(threads: int | dict[str, int] | None) -> None:
    """Torch threads of this worker process: a number, or cores per worker by host name."""
    import torch

    if isinstance(threads, dict):  # cores per worker by host, measured by the client
        import socket

        threads = threads.get(socket.gethostname()) or threads.get("*")
    if threads:
        torch.set_num_threads(int(threads))


def _run_file(spec: TaskSpec, source: Path, output: Path, options: dict[str, Any], resume: bool,
              threads: int | dict[str, int] | None, cancel: str | None = None) -> dict[str, Any]:
    """One file on a Dask worker: torch limited to this worker's share of the cores; a cancel
    (the ``distributed.Event`` named ``cancel``) stops it at its next progress step."""
    from .chunked import run_cancellable

    _set_threads(threads)
    start = time.perf_counter()
    try:
        return run_cancellable(file_steps(spec, source, output, options, resume=resume), cancel)
    except Cancelled:
        return _row(source, output, "cancelled", time.perf_counter() - start)


# ---------------------------------------------------------------------------- the batch
def batch_steps(
    task: str | TaskSpec,
    inputs: str | Path | Iterable[str | Path],
    out_dir: str | Path,
    *,
    options: dict[str, Any] | None = None,
    resume: bool = True,
    workers: int = 1,
    scheduler: str | None = None,
    chunk_rows: int | None = None,
) -> Generator[Progress, None, BatchSummary]:
    """:func:`batch` as a generator: overall :class:`Progress` in files, per-file progress in ``data``.

    ``data`` holds ``index`` (the file's row), ``input``, and either ``file_done``/``file_total``
    (within a file) or ``row`` (the file's finished summary row). Closing the generator cancels:
    between files, or within a file at its next step (in this process).
    """
    spec = get_task(task)
    opts = spec.resolve(options)
    out_dir = Path(out_dir).expanduser()
    sources = find_inputs(inputs, exclude=[out_dir])
    if any(_resolved(out_dir) == _resolved(p.parent) for p in sources) and out_dir.exists():
        raise OutputError(f"the output folder {out_dir} holds the inputs; write the results to another folder")
    outputs = plan_outputs(spec, sources, out_dir, opts)
    target = parse_scheduler(scheduler, workers)
    if chunk_rows is not None:
        chunk_bounds(1, chunk_rows)  # a usage error, before any work
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None

    rows: list[dict[str, Any] | None] = [None] * len(sources)
    n = len(sources)
    try:
        if spec.name in CHUNKED_TASKS and n == 1 and (target is not None or chunk_rows is not None):
            rows[0] = yield from _chunked_file(spec, sources[0], outputs[0], opts, resume, chunk_rows, workers,
                                               scheduler)
            yield Progress(1, 1, f"{sources[0].name}: {rows[0]['status']}",
                           {"index": 0, "input": str(sources[0]), "row": rows[0]})
        elif target is None:
            for i, (src, out) in enumerate(zip(sources, outputs, strict=True)):
                yield Progress(i, n, f"{src.name}: starting", {"index": i, "input": str(src), "file_done": 0,
                                                                "file_total": 1})
                steps = file_steps(spec, src, out, opts, resume=resume)
                while True:
                    try:
                        p = next(steps)
                    except StopIteration as stop:
                        rows[i] = stop.value
                        break
                    yield Progress(i, n, f"{src.name}: {p.message}",
                                   {"index": i, "input": str(src), "file_done": p.done, "file_total": p.total})
                yield Progress(i + 1, n, f"{src.name}: {rows[i]['status']}",
                               {"index": i, "input": str(src), "row": rows[i]})
        else:
            yield from _dask_steps(spec, sources, outputs, opts, resume, target, rows)
    finally:
        # also on cancel or an unexpected error: the summary says what was done
        done = BatchSummary(r or _row(s, o, "cancelled") for r, s, o in zip(rows, sources, outputs, strict=True))
        done.write_csv(out_dir / SUMMARY_NAME)
    return done


def _chunked_file(spec, source, output, opts, resume, chunk_rows, workers, scheduler):
    """One file as slabs of rows (:mod:`.chunked`), each a Dask task; returns its summary row."""
    from ..io.writers import clean_leftovers
    from .chunked import chunked_steps

    clean_leftovers(output)
    if output.exists() and resume:
        return _row(source, output, "skipped")
    start = time.perf_counter()
    data = {"index": 0, "input": str(source)}
    try:
        steps = chunked_steps(spec.name, source, output, options=opts, chunk_rows=chunk_rows, workers=workers,
                              scheduler=scheduler, resume=resume)
        for p in steps:
            yield Progress(0, 1, f"{source.name}: {p.message}", {**data, "file_done": p.done, "file_total": p.total})
    except Exception as exc:  # as file_steps: the failure goes in the summary
        log.warning("batch %s: %s failed: %s", spec.name, source, _error_text(exc))
        return _row(source, output, "failed", time.perf_counter() - start, _error_text(exc))
    return _row(source, output, "ok", time.perf_counter() - start)


@contextmanager
def dask_client(target: str | int | None) -> Iterator[tuple[Any, Any, int]]:
    """``(client, torch threads per worker, workers)`` for a :func:`parse_scheduler` target:
    ``(None, None, 1)`` in this process, a LocalCluster of N processes, or a running scheduler."""
    if target is None:
        yield None, None, 1
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("running on Dask needs the 'distributed' package: pip install distributed") from None
    cluster = None
    try:
        if isinstance(target, int):
            cluster = LocalCluster(n_workers=target, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
            threads: Any = max(1, (os.cpu_count() or 1) // target)
            n_workers = target
        else:
            try:
                client = Client(target, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"cannot reach the Dask scheduler at {target}: {exc}") from None
            threads = _threads_by_host(client)
            n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        try:
            yield client, threads, n_workers
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def as_finished(futures: Iterable[Any], every: float = 0.5) -> Iterator[Any]:
    """Each Dask future as it finishes, and ``None`` every ``every`` seconds while none does: a
    step at which the caller can yield, so a cancel lands within a second, not after a file."""
    from distributed import wait

    pending = list(futures)
    while pending:
        try:
            wait(pending, timeout=every, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass
        finished = [f for f in pending if f.done()]
        if not finished:
            yield None
        for f in finished:
            pending.remove(f)
            yield f


def _dask_steps(spec, sources, outputs, opts, resume, target, rows):
    from distributed import Event, wait

    n = len(sources)
    yield Progress(0, n, "starting Dask workers" if isinstance(target, int) else f"connecting to {target}")
    with dask_client(target) as (client, threads, _):
        cancel = f"tomoml-{spec.name}-{os.getpid()}-{time.time_ns()}"
        event = Event(cancel, client=client)
        futures = {client.submit(_run_file, spec, s, o, opts, resume, threads, cancel, pure=False,
                                 key=f"{cancel}-{i}"): i
                   for i, (s, o) in enumerate(zip(sources, outputs, strict=True))}
        done = 0
        try:
            for future in as_finished(futures):
                if future is None:
                    yield Progress(done, n, "running")
                    continue
                i = futures[future]
                try:
                    rows[i] = future.result()
                except Exception as exc:  # the worker itself died (killed, out of memory)
                    rows[i] = _row(sources[i], outputs[i], "failed", 0.0, f"Dask worker failed: {_error_text(exc)}")
                done += 1
                yield Progress(done, n, f"{sources[i].name}: {rows[i]['status']}",
                               {"index": i, "input": str(sources[i]), "row": rows[i]})
        finally:
            if done < n:  # cancelled: running files stop at their next step and remove their partial output,
                event.set()  # files not started yet end at once; the cluster closes only after that
                wait(list(futures), timeout=60)
                for future, i in futures.items():
                    if rows[i] is None and future.status == "finished":
                        rows[i] = future.result()


def _host_cores() -> tuple[str, int]:
    import socket

    return socket.gethostname(), os.cpu_count() or 1


def _threads_by_host(client: Any) -> dict[str, int]:
    """Cores per worker process on each host of a running cluster, for torch's thread count."""
    hosts = list(client.run(_host_cores).values())  # one (hostname, cores) per worker process
    return {name: max(1, cores // sum(h == name for h, _ in hosts)) for name, cores in hosts}


def batch(
    task: str | TaskSpec,
    inputs: str | Path | Iterable[str | Path],
    out_dir: str | Path,
    *,
    options: dict[str, Any] | None = None,
    resume: bool = True,
    workers: int = 1,
    scheduler: str | None = None,
    chunk_rows: int | None = None,
    progress: ProgressArg = None,
) -> BatchSummary:
    """Run a registered ``task`` over ``inputs`` into ``out_dir``; returns the summary table.

    ``inputs``: a folder (each visible entry is one input), a glob (``"night/*.h5"``) or a list
    of paths. ``options``: the task's parameters (see
    :func:`~napari_tomoml.tasks.registry.get_task`); output name = input stem + the task's suffix.
    ``resume`` skips inputs whose output exists (outputs appear only when complete); with
    ``resume=False`` every output is computed again. ``workers=N`` runs N local processes;
    ``scheduler`` is a ``dask.distributed`` address or ``"local:N"``. One input of reconstruct
    or denoise with workers (or ``chunk_rows``) is split into slabs of ``chunk_rows`` rows, each
    a Dask task, into one output, resumable slab by slab (:mod:`napari_tomoml.tasks.chunked`);
    the result equals the single-process one bit for bit. A failed file is a row
    with ``status="failed"`` and its ``error``; the run goes on. The table is also written to
    ``out_dir/batch-summary.csv``.

    >>> import napari_tomoml as tm
    >>> summary = tm.batch("reconstruct", "night-shift/", "recon/", options={"center": "auto"})  # doctest: +SKIP
    >>> summary.counts(), [r["error"] for r in summary.failed]                # doctest: +SKIP
    ({'ok': 38, 'failed': 2}, ['scan_07.h5: not a readable HDF5 file, ...', ...])
    """
    steps = batch_steps(task, inputs, out_dir, options=options, resume=resume, workers=workers, scheduler=scheduler,
                        chunk_rows=chunk_rows)
    try:
        return run_to_end(steps, progress)
    except KeyboardInterrupt:
        steps.close()  # the summary of what finished is written on the way out
        raise Cancelled("batch interrupted; run it again to continue where it stopped") from None
