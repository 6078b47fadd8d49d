"""Live phase retrieval: frames from a source → a buffer → batched PtychoNN → a growing stitched image.

A *source* delivers :class:`Frame` s (pattern, scan position) from its own thread into a
:class:`FrameBuffer`; the :class:`LiveEngine` takes up to ``batch`` frames at a time (whatever
has arrived: no waiting for a full batch), runs the network, stitches the phase (and amplitude)
at the positions and reports counters: received, inferred, buffered (waiting), dropped (the
buffer was full; unbounded by default, so frames that arrive while the network comes online are
kept, as in the seed's 2 kHz run), lost (gaps the source saw upstream, e.g. pvAccess updates
squashed) and the inference rate. A newer model can be swapped in at any time
(:meth:`LiveEngine.swap_model`); it is used from the next batch on (online training).

Sources: :class:`SimulatedDetector` (recorded/simulated patterns replayed at a set rate),
:class:`FolderSource` (``.npz`` files appearing in a folder) and :class:`PvaSource` (EPICS
pvAccess NTNDArray updates through p4p, positions in the NDArray attributes; see
:class:`PvaDetectorServer` for a publisher).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..device import resolve_device
from ..errors import InputError, ScanReadError
from ..progress import Progress, ProgressArg, run_to_end
from .nn import _check_size, _resolve_model, inference_copy, model_size, resize_stack, run_network, stitch_weights
from .sim import check_patterns, check_positions
from .stitching import Stitcher


@dataclass
class Frame:
    """One detector frame and the probe position (y, x) in object pixels where it was recorded."""

    index: int
    pattern: np.ndarray
    position: tuple[float, float]


class FrameBuffer:
    """A thread-safe FIFO of frames; with ``max_frames`` the oldest are dropped (and counted) when full.

    >>> b = FrameBuffer(max_frames=2)
    >>> for i in range(3): b.put(Frame(i, np.zeros((2, 2)), (1.0, 1.0)))
    >>> [f.index for f in b.take(5, timeout=0)], b.received, b.dropped
    ([1, 2], 3, 1)
    """

    def __init__(self, max_frames: int | None = None):
        self._frames: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self.max_frames = max_frames
        self.received = 0
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            self.received += 1
            self._frames.append(frame)
            if self.max_frames is not None and len(self._frames) > self.max_frames:
                self._frames.popleft()
                self.dropped += 1
            self._cond.notify()

    def take(self, n: int, timeout: float = 0.05) -> list[Frame]:
        """Up to ``n`` frames, waiting at most ``timeout`` s for the first one."""
        with self._cond:
            if not self._frames and timeout > 0:
                self._cond.wait(timeout)
            return [self._frames.popleft() for _ in range(min(n, len(self._frames)))]

    def __len__(self) -> int:
        return len(self._frames)


class _ThreadSource:
    """A source running ``_run(sink)`` on a daemon thread; ``finished`` once it has delivered all it will."""

    lost = 0
    total: int | None = None

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.finished = False
        self.error: BaseException | None = None

    def start(self, sink: Callable[[Frame], None]) -> None:
        def run() -> None:
            try:
                self._run(sink)
            except BaseException as exc:  # reported by the engine on its own thread
                self.error = exc
            finally:
                self.finished = True

        self._stop.clear()
        self.finished = False
        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, sink: Callable[[Frame], None]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SimulatedDetector(_ThreadSource):
    """Replays ``patterns`` (N, H, W) at ``positions`` as a detector at ``rate`` frames/s (``None``: as fast as
    possible), ``repeat`` times over.

    >>> det = SimulatedDetector(np.zeros((3, 8, 8)), np.full((3, 2), 4.0), rate=None)
    >>> buf = FrameBuffer(); det.start(buf.put); det.stop()
    >>> buf.received
    3
    """

    def __init__(self, patterns: np.ndarray, positions: np.ndarray, *, rate: float | None = 1000.0, repeat: int = 1):
        super().__init__()
        self.patterns = check_patterns(patterns)
        self.positions = check_positions(positions, len(self.patterns))
        if rate is not None and not rate > 0:
            raise InputError(f"detector rate must be positive frames/s (or None), got {rate}")
        self.rate, self.repeat = rate, max(1, int(repeat))
        self.total = len(self.patterns) * self.repeat

    def _run(self, sink: Callable[[Frame], None]) -> None:
        n = len(self.patterns)
        start = time.perf_counter()
        for i in range(self.total):
            if self._stop.is_set():
                return
            if self.rate is not None:
                due = start + i / self.rate
                wait = due - time.perf_counter()
                if wait > 0.002:  # frames that are due are sent at once (bursts keep the mean rate)
                    time.sleep(wait)
            k = i % n
            sink(Frame(i, self.patterns[k], (float(self.positions[k, 0]), float(self.positions[k, 1]))))


class FolderSource(_ThreadSource):
    """Frames from ``.npz`` files written into ``folder`` while a scan runs, in name order.

    Each file holds ``patterns`` (n, H, W) or (H, W) and ``positions`` (n, 2) or (2,). Writers
    should write under another name and rename (a half-written file is retried, then skipped
    and counted as lost). The scan ends when a file called ``end_marker`` appears (or at
    :meth:`stop`).
    """

    def __init__(self, folder: str | Path, *, pattern: str = "*.npz", end_marker: str = "scan.done",
                 poll: float = 0.02, retries: int = 50):
        super().__init__()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ScanReadError(f"frame folder {self.folder} does not exist")
        self.pattern, self.end_marker, self.poll, self.retries = pattern, end_marker, poll, retries

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with np.load(path, allow_pickle=False) as data:
            return check_patterns(data["patterns"]), check_positions(np.atleast_2d(data["positions"]))

    def _run(self, sink: Callable[[Frame], None]) -> None:
        seen: set[str] = set()
        failures: dict[str, int] = {}
        index = 0
        while not self._stop.is_set():
            ended = (self.folder / self.end_marker).exists()  # checked before listing: no file is missed
            for path in sorted(self.folder.glob(self.pattern)):
                if path.name in seen:
                    continue
                try:
                    pats, pos = self._read(path)
                    if len(pats) != len(pos):
                        raise InputError(f"{path}: {len(pats)} patterns but {len(pos)} positions")
                except Exception:
                    failures[path.name] = failures.get(path.name, 0) + 1
                    if failures[path.name] < self.retries:
                        break  # keep name order: wait for this file to be complete
                    seen.add(path.name)
                    self.lost += 1
                    continue
                seen.add(path.name)
                for p, (y, x) in zip(pats, pos):
                    sink(Frame(index, p, (float(y), float(x))))
                    index += 1
            else:
                if ended:
                    return
            time.sleep(self.poll)


class PvaSource(_ThreadSource):
    """Frames from an EPICS pvAccess channel of NTNDArray updates (p4p client).

    The probe position comes from the NDArray attributes ``position_y`` and ``position_x``;
    gaps in ``uniqueId`` (updates the server had to squash) are counted as ``lost``. The scan
    ends after ``frames`` updates (if given), when an update carries the attribute ``end`` = 1,
    or at :meth:`stop`. With ``timeout``, no first frame within that many seconds is an error.
    ``conf``: client settings (``EPICS_PVA_ADDR_LIST``…) instead of the environment's.
    """

    def __init__(self, channel: str, *, frames: int | None = None, queue: int = 1000, timeout: float | None = None,
                 conf: dict[str, str] | None = None):
        super().__init__()
        try:
            from p4p.client.thread import Context  # noqa: F401
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise InputError("pvAccess needs p4p: pip install p4p") from exc
        self.channel, self.total, self.queue, self.timeout, self.conf = channel, frames, queue, timeout, conf

    def _run(self, sink: Callable[[Frame], None]) -> None:
        from p4p.client.thread import Context

        ctx = Context("pva", conf=self.conf, useenv=self.conf is None)
        state = {"last": None, "count": 0, "index": 0}
        done = threading.Event()

        def on_update(value: Any) -> None:
            if isinstance(value, Exception):
                return  # (dis)connection events
            attrib = dict(getattr(value, "attrib", {}) or {})
            if attrib.get("end"):
                done.set()
                return
            uid = int(value.raw["uniqueId"])
            if uid == 0:  # the value current at connection (a server's placeholder), not a new frame
                return
            if state["last"] is not None and uid > state["last"] + 1:
                self.lost += uid - state["last"] - 1
            state["last"] = uid
            pattern = np.asarray(value, dtype=np.float32)
            sink(Frame(uid, pattern, (float(attrib.get("position_y", 0.0)), float(attrib.get("position_x", 0.0)))))
            state["count"] += 1
            if self.total is not None and state["count"] + self.lost >= self.total:
                done.set()

        sub = ctx.monitor(self.channel, on_update, request=f"record[queueSize={int(self.queue)}]", notify_disconnect=True)
        start = time.perf_counter()
        try:
            while not (done.is_set() or self._stop.is_set()):
                done.wait(0.05)
                if self.timeout is not None and state["count"] == 0 and time.perf_counter() - start > self.timeout:
                    raise InputError(f"no frames arrived from pvAccess channel {self.channel!r} in {self.timeout:g} s")
        finally:
            sub.close()
            ctx.close()


class PvaDetectorServer:
    """A pvAccess server publishing frames as NTNDArray updates (a stand-in detector for tests and demos).

    Clients on the same machine reach it with ``PvaSource(channel, conf=server.conf)``.

    >>> with PvaDetectorServer("TEST:PTYCHO:image") as server:      # doctest: +SKIP
    ...     server.publish(pattern, (y, x))
    """

    def __init__(self, channel: str, shape: tuple[int, int] = (64, 64), *, conf: dict[str, str] | None = None):
        from p4p.nt import NTNDArray
        from p4p.server import Server
        from p4p.server.thread import SharedPV

        self.channel = channel
        self._nt = NTNDArray()
        self._pv = SharedPV(nt=self._nt, wrap=self._wrap, initial=np.zeros(shape, np.float32))
        self._server = Server(providers=[{channel: self._pv}], conf=conf, useenv=conf is None)
        self._uid = 0

    def _wrap(self, value: Any, **kws: Any) -> Any:
        from p4p import Value

        return value if isinstance(value, Value) else self._nt.wrap(value, **kws)

    @property
    def conf(self) -> dict[str, str]:
        """Client settings that reach this server (its address and port)."""
        return self._server.conf()

    def publish(self, pattern: np.ndarray, position: tuple[float, float]) -> None:
        self._uid += 1
        value = self._nt.wrap(np.asarray(pattern, np.float32), attrib={"position_y": float(position[0]),
                                                                        "position_x": float(position[1])})
        value["uniqueId"] = self._uid
        self._pv.post(value)

    def end(self) -> None:
        """Tell clients the scan is over."""
        self._pv.post(self._nt.wrap(np.zeros((1, 1), np.float32), attrib={"end": 1}))

    def close(self) -> None:
        self._server.stop()

    def __enter__(self) -> PvaDetectorServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class LiveResult:
    """Where a live run ended: the stitched images and the final counters."""

    phase: np.ndarray
    amplitude: np.ndarray | None
    counters: dict[str, float] = field(default_factory=dict)


class LiveEngine:
    """Run a model on frames from ``source`` as they arrive; stitch the results; count everything.

    ``size``: the network input size (default: the model's training size); frames are binned to
    it, and the stitched image is on that grid (``scale`` = frame size / size object pixels per
    image pixel), patches weighted by ``weights`` (default ``"model"``: the model's
    :func:`~napari_tomoml.ptycho.nn.stitch_weights`). ``max_buffer`` bounds the waiting frames
    (oldest dropped, counted); ``None`` keeps all.

    >>> engine = LiveEngine(SimulatedDetector(patterns, positions, rate=500), model)   # doctest: +SKIP
    >>> result = run_to_end(engine.steps())                                            # doctest: +SKIP
    >>> result.counters["rate"]                                                        # doctest: +SKIP
    """

    def __init__(self, source: Any, model: Any, *, batch: int = 64, size: int | None = None, device: str = "auto",
                 max_buffer: int | None = None, weights: np.ndarray | str | None = "model",
                 canvas: tuple[int, int] | None = None):
        self.source = source
        self.device = resolve_device(device)
        self.batch = max(1, int(batch))
        self.buffer = FrameBuffer(max_buffer)
        self._model = inference_copy(_resolve_model(model, self.device))
        self._size = size
        self._pending: Any = None
        self._lock = threading.Lock()
        self.swaps = 0
        self.weights = weights
        self.canvas = canvas
        self.inferred = 0
        self.phase: Stitcher | None = None
        self.amplitude: Stitcher | None = None
        self.latest: np.ndarray | None = None
        self._times: collections.deque[tuple[float, int]] = collections.deque()
        self.first_result: float | None = None
        self._first_count = 0
        self._last_result = 0.0
        self.frame_size: int | None = None
        self.max_buffered = 0

    def swap_model(self, model: Any) -> None:
        """Use ``model`` from the next batch on (thread-safe; online training calls this)."""
        resolved = inference_copy(_resolve_model(model, self.device))
        with self._lock:
            self._pending = resolved

    def counters(self) -> dict[str, float]:
        """received, inferred, buffered, dropped, lost, rate (frames/s over the last second), swaps."""
        now = time.perf_counter()
        while len(self._times) > 1 and now - self._times[0][0] > 1.0:
            self._times.popleft()
        rate = 0.0
        if len(self._times) > 1:
            (t0, n0), (t1, n1) = self._times[0], self._times[-1]
            rate = (n1 - n0) / max(t1 - t0, 1e-9)
        return {"received": self.buffer.received, "inferred": self.inferred, "buffered": len(self.buffer),
                "dropped": self.buffer.dropped, "lost": getattr(self.source, "lost", 0), "rate": rate,
                "swaps": self.swaps}

    def _infer(self, frames: list[Frame]) -> None:
        with self._lock:
            if self._pending is not None:
                self._model, self._pending = self._pending, None
                self.swaps += 1
            model = self._model
        pats = np.stack([f.pattern for f in frames])
        if pats.ndim != 3 or pats.shape[1] != pats.shape[2]:
            raise InputError(f"live frames must be square 2-D images, got {pats.shape[1:]}")
        if self.frame_size is None:
            self.frame_size = pats.shape[1]
            size = _check_size(self._size or model_size(model, self.frame_size))
            if self.frame_size % size and size % self.frame_size:
                raise InputError(f"frames of {self.frame_size}² cannot be binned to the model's {size}²")
            self.size = size
            self.scale = self.frame_size / size
            shape = (0, 0) if self.canvas is None else tuple(int(np.ceil(c / self.scale)) for c in self.canvas)
            if isinstance(self.weights, str) and self.weights == "model":
                self.weights = stitch_weights(model, size)
            self.phase = Stitcher(shape, self.weights)
        elif pats.shape[1] != self.frame_size:
            raise InputError(f"a {pats.shape[1]}² frame arrived in a scan of {self.frame_size}² frames")
        if not np.isfinite(pats).all():
            raise InputError("a live frame contains NaN or infinite values")
        x = resize_stack(pats, self.size, counts=True)[:, None]
        out = run_network(model, x, self.device)
        pos = np.array([f.position for f in frames], np.float64) / self.scale
        self.phase.add(out[:, 0], pos)
        if out.shape[1] > 1:
            if self.amplitude is None:
                self.amplitude = Stitcher(self.phase.shape, self.weights)
            self.amplitude.add(out[:, 1], pos)
        self.latest = out[-1, 0]
        self.inferred += len(frames)
        now = time.perf_counter()
        if self.first_result is None:  # the sustained rate counts from the end of the first batch
            self.first_result, self._first_count = now, self.inferred
        self._last_result = now
        self._times.append((now, self.inferred))

    def steps(self, *, max_frames: int | None = None, duration: float | None = None,
              update_every: float = 0.1, images: bool = True) -> Generator[Progress, None, LiveResult]:
        """Run until the source has finished and the buffer is empty (or ``max_frames``/``duration``), yielding a
        Progress every ``update_every`` s with ``data={"counters", "phase", "amplitude", "latest"}`` (images only
        with ``images=True``). Closing the generator stops the source."""
        self.source.start(self.buffer.put)
        start = last = time.perf_counter()
        try:
            while True:
                if getattr(self.source, "error", None) is not None:
                    raise self.source.error
                frames = self.buffer.take(self.batch, timeout=0.02)
                self.max_buffered = max(self.max_buffered, len(frames) + len(self.buffer))
                if frames:
                    self._infer(frames)
                now = time.perf_counter()
                finished = (self.source.finished and not len(self.buffer)) or (
                    max_frames is not None and self.inferred >= max_frames) or (
                    duration is not None and now - start >= duration)
                if now - last >= update_every or finished:
                    last = now
                    yield Progress(self.inferred, self._total(), "live phase retrieval", self._data(images))
                if finished:
                    break
        finally:
            self.source.stop()
        if getattr(self.source, "error", None) is not None:
            raise self.source.error
        counters = self.counters()
        counters["elapsed_s"] = time.perf_counter() - start
        counters["max_buffered"] = self.max_buffered
        if self.first_result is not None:
            span = self._last_result - self.first_result
            counters["sustained_rate"] = (self.inferred - self._first_count) / span if span > 0 else 0.0
        return LiveResult(self._image(self.phase), self._image(self.amplitude), counters)

    def _total(self) -> int:
        total = getattr(self.source, "total", None)
        return int(total) if total else max(self.buffer.received, self.inferred, 1)

    def _image(self, stitcher: Stitcher | None) -> np.ndarray | None:
        if stitcher is None:
            return None
        shape = None if self.canvas is None else tuple(int(np.ceil(c / self.scale)) for c in self.canvas)
        return stitcher.image(shape=shape)

    def _data(self, images: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"counters": self.counters()}
        if images:
            data["phase"] = self._image(self.phase)
            data["amplitude"] = self._image(self.amplitude)
            data["latest"] = self.latest
            data["scale"] = getattr(self, "scale", 1.0)
        return data


def live_steps(source: Any, model: Any, **options: Any) -> Generator[Progress, None, LiveResult]:
    """A :class:`LiveEngine` run as a generator (widgets and the CLI drive this).

    ``options``: engine settings (``batch``, ``size``, ``device``, ``max_buffer``, ``weights``,
    ``canvas``) and run settings (``max_frames``, ``duration``, ``update_every``, ``images``).
    """
    run_keys = {"max_frames", "duration", "update_every", "images"}
    engine = LiveEngine(source, model, **{k: v for k, v in options.items() if k not in run_keys})
    return (yield from engine.steps(**{k: v for k, v in options.items() if k in run_keys}))


def run_live(source: Any, model: Any, *, progress: ProgressArg = None, **options: Any) -> LiveResult:
    """:func:`live_steps` to its end.

    >>> result = run_live(SimulatedDetector(patterns, positions, rate=300), "ptychonn.safetensors")  # doctest: +SKIP
    """
    return run_to_end(live_steps(source, model, **options), progress)
