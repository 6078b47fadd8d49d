"""Writers for volumes and scans: TIFF stack, HDF5 (DXchange layout), zarr.

Every writer refuses to replace an existing path unless ``overwrite=True``, writes to a hidden
temporary name beside the target and renames it into place at the end, so a crash or a full
disk never leaves a half-written file over the user's data. Arrays are written slab by slab
along the first axis, so a lazy (dask, memmap, HDF5) input never has to fit in memory.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError, OutputExistsError, ResultError
from .scan import Scan

#: Size of one slab read from the input while writing.
SLAB_BYTES = 64 << 20

#: TIFF stacks larger than this are written as BigTIFF (classic TIFF stops at 4 GiB offsets).
BIGTIFF_BYTES = (2 << 30) - (64 << 20)


def _check_volume(volume: Any, name: str = "volume") -> Any:
    if not hasattr(volume, "ndim"):
        volume = np.asarray(volume)
    if volume.ndim == 0:
        raise InputError(f"{name} is a scalar; expected an array")
    if np.dtype(volume.dtype).kind not in "biuf":
        raise InputError(f"{name} has dtype {volume.dtype}; expected a numeric array")
    return volume


def _slabs(volume: Any, align: int = 1) -> Iterator[tuple[slice, np.ndarray]]:
    """``(slice, numpy slab)`` along axis 0: dask chunks, else ~SLAB_BYTES in multiples of ``align``."""
    n = volume.shape[0]
    chunks = getattr(volume, "chunks", None)
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], tuple):  # dask: compute each chunk once
        bounds = np.cumsum((0,) + chunks[0])
    else:
        per_frame = max(1, int(np.prod(volume.shape[1:])) * np.dtype(volume.dtype).itemsize)
        step = max(align, (SLAB_BYTES // per_frame) // align * align)
        bounds = list(range(0, n, step)) + [n]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        sl = slice(int(a), int(b))
        yield sl, np.asarray(volume[sl])


def storage_chunks(shape: tuple[int, ...], itemsize: int, target: int = 1 << 20) -> tuple[int, ...]:
    """On-disk chunks of about ``target`` bytes: a few frames by a band of rows by all columns.

    Balances reading one projection (few chunks) against one sinogram (a band of rows per
    angle rather than whole frames).

    >>> storage_chunks((1000, 2048, 2048), 4)
    (4, 32, 2048)
    """
    if len(shape) < 3:
        return tuple(shape)
    cols = int(np.prod(shape[2:]))
    n_frames = min(shape[0], 4)
    rows = max(1, min(shape[1], target // max(1, n_frames * cols * itemsize)))
    return (n_frames, rows) + tuple(shape[2:])


# ---------------------------------------------------------------------------- atomic outputs
_TMP, _OLD = ".tmp-", ".old-"


def check_output(path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """The one refusal rule for every output; raises before any work is done.

    Refused: an existing ``path`` unless ``overwrite`` (:class:`OutputExistsError`); a ``path``
    that is one of ``inputs``, even with ``overwrite`` (the input would be lost), and a folder
    that cannot be written (:class:`OutputError`). Missing parent folders are fine (created later).

    >>> check_output("/tmp/new-volume.npy")
    PosixPath('/tmp/new-volume.npy')
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_path(path, Path(source)):
            raise OutputError(f"output {path} is the input; write the result under another name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass --overwrite (overwrite=True) to replace it")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: the folder {folder} is not writable")
    return path


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_leftovers(path: str | Path) -> list[Path]:
    """Remove what killed writes of ``path`` left behind; returns what was removed or restored.

    Temporary ``.NAME.tmp-PID-*`` files of processes that are gone are deleted. A folder output
    moved aside as ``.NAME.old-PID-*`` by a write killed between its two renames is put back when
    ``path`` is missing (the old result is restored), else deleted.

    >>> clean_leftovers("/tmp/never-written.npy")
    []
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    done = []
    for kind in (_OLD, _TMP):
        for left in sorted(path.parent.glob(f".{glob.escape(path.name)}{kind}*")):
            pid_text = left.name[len(path.name) + 1 + len(kind):].split("-", 1)[0]
            if pid_text.isdigit() and _pid_alive(int(pid_text)):
                continue  # a write in progress in another process
            if kind == _OLD and not (path.exists() or path.is_symlink()):
                os.replace(left, path)
            elif left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)
            done.append(left)
    return done


def _fsync(path: Path) -> None:
    """Flush a file, or every file of a folder, to disk (where the OS allows it)."""
    targets = [path] if not path.is_dir() else [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
    if path.is_dir():
        targets += [Path(d) for d, _, _ in os.walk(path)]
    for target in targets:
        try:
            fd = os.open(target, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:  # e.g. folders on Windows
            pass
        finally:
            os.close(fd)


@contextmanager
def atomic_output(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it becomes ``path`` only if the block succeeds.

    The one way every output is written: :func:`check_output` first (the refusal rule), leftovers
    of killed runs cleaned (:func:`clean_leftovers`), then the block writes the temporary file
    or folder (same folder, so the final rename is atomic), which is flushed to disk (fsync) and
    renamed onto ``path``. A crash, an error or kill -9 at any moment leaves either the old output
    or the new one, never a mix or a truncated file.

    >>> with atomic_output("/tmp/result.npy", overwrite=True) as tmp:    # doctest: +SKIP
    ...     np.save(tmp, volume)
    """
    path = check_output(path, overwrite=overwrite, inputs=inputs)
    clean_leftovers(path)
    if (path.exists() or path.is_symlink()) and not overwrite:  # restored by clean_leftovers
        raise OutputExistsError(f"{path}: already exists; pass --overwrite (overwrite=True) to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}{_TMP}{tag}")
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise OutputError(f"nothing was written to {path}")
        _fsync(tmp)
        if path.is_dir() and not path.is_symlink():
            # a folder cannot be replaced in one step: move the old one aside first (restored by
            # clean_leftovers if we are killed before the second rename)
            old = path.with_name(f".{path.name}{_OLD}{tag}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def _json_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``metadata``, refused with :class:`InputError` unless JSON can store it."""
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"metadata must be JSON-serialisable (strings, numbers, lists, dicts): {exc}"
        ) from None
    return metadata


def _check_theta(theta: Any, volume: Any) -> np.ndarray | None:
    if theta is None:
        return None
    theta = np.asarray(theta, dtype=np.float64).ravel()
    if volume.ndim != 3 or theta.size != volume.shape[0]:
        raise InputError(f"{theta.size} angles for a volume of shape {tuple(volume.shape)}")
    return theta


def _unpack(volume: Any, theta: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """``(array, flats, darks, theta, attrs)`` from a :class:`Scan` or a plain array."""
    if not isinstance(volume, Scan):
        return volume, None, None, theta, {}
    attrs = {}
    if volume.metadata.get("center") is not None:
        attrs["center"] = float(volume.metadata["center"])
    if volume.metadata.get("units"):
        attrs["units"] = str(volume.metadata["units"])
    theta = volume.theta if theta is None else theta
    return volume.projections, volume.flats, volume.darks, theta, attrs


def write_tiff_stack(
    path: str | Path,
    volume: Any,
    *,
    theta: Any = None,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a 2-D image or a 3-D stack as one multi-page TIFF (BigTIFF when over ~2 GiB).

    ``theta`` (radians) and ``metadata`` (JSON-serialisable) go into the file's description, where
    :func:`~napari_tomoml.io.read_tiff_stack` finds them again.

    >>> import numpy as np
    >>> write_tiff_stack("rec.tif", np.zeros((4, 8, 8), np.float32))   # doctest: +SKIP
    PosixPath('rec.tif')
    """
    import tifffile

    volume = _check_volume(volume)
    if volume.ndim not in (2, 3):
        raise InputError(f"volume has shape {volume.shape}; a TIFF stack takes 2-D or 3-D arrays")
    description = _json_metadata(metadata)
    theta = _check_theta(theta, volume)
    if theta is not None:
        description["theta_deg"] = np.degrees(theta).round(6).tolist()
    dtype = np.dtype(volume.dtype)
    big = int(np.prod(volume.shape)) * dtype.itemsize > BIGTIFF_BYTES

    def pages() -> Iterator[np.ndarray]:
        if volume.ndim == 2:
            yield np.asarray(volume)
            return
        for _, slab in _slabs(volume):
            yield from slab

    with atomic_output(path, overwrite=overwrite) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=big) as tif:
            # minisblack: a last axis of 3 or 4 must stay columns, not become RGB(A) samples
            tif.write(
                pages(), shape=volume.shape, dtype=dtype, photometric="minisblack", metadata=description
            )
    return Path(path)


def write_hdf5(
    path: str | Path,
    volume: Any,
    *,
    dataset: str = "/exchange/data",
    theta: Any = None,
    overwrite: bool = False,
    chunks: tuple[int, ...] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an array, or a whole :class:`Scan`, to HDF5 (DXchange layout by default).

    A :class:`Scan` writes projections, ``data_white`` (flats), ``data_dark`` (darks) and
    ``theta`` beside ``dataset``; for an array, ``theta`` (radians) is optional. Angles are stored
    in degrees with ``units="degrees"``, as DXchange expects. ``metadata`` (JSON-serialisable,
    e.g. provenance) becomes attributes of the dataset: numbers and strings as they are, lists
    and dicts as JSON text. ``chunks`` defaults to :func:`storage_chunks`.

    >>> import numpy as np
    >>> write_hdf5("proj.h5", np.zeros((3, 4, 5), np.float32), theta=[0, 1, 2])   # doctest: +SKIP
    PosixPath('proj.h5')
    """
    import h5py

    volume, flats, darks, theta, attrs = _unpack(volume, theta)
    volume = _check_volume(volume)
    theta = _check_theta(theta, volume)
    for key, value in _json_metadata(metadata).items():
        if value is not None:
            attrs[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    if not dataset.startswith("/") or dataset.endswith("/"):
        raise InputError(f"dataset must be an absolute HDF5 path like '/exchange/data'; got {dataset!r}")
    group, _, name = dataset.rpartition("/")
    # DXchange names beside /exchange/data; "<dataset>_theta" etc. beside any other dataset
    sibling = (lambda n: f"{group}/{n}") if name == "data" else (lambda n: f"{dataset}_{n}")
    chunks = chunks or storage_chunks(tuple(volume.shape), np.dtype(volume.dtype).itemsize)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(dataset, shape=volume.shape, dtype=volume.dtype, chunks=chunks)
            ds.attrs.update(attrs)
            for sl, slab in _slabs(volume, chunks[0]):
                ds[sl] = slab
            for key, ref in (("white", flats), ("dark", darks)):
                if ref is not None:
                    f.create_dataset(sibling(f"data_{key}" if name == "data" else key), data=np.asarray(ref))
            if theta is not None:
                th = f.create_dataset(sibling("theta"), data=np.degrees(theta))
                th.attrs["units"] = "degrees"
    return Path(path)


def write_zarr(
    path: str | Path,
    volume: Any,
    *,
    chunks: tuple[int, ...] | None = None,
    theta: Any = None,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an array, or a whole :class:`Scan`, as a zarr group with an array ``data``.

    A :class:`Scan` also writes ``flats``, ``darks`` and ``theta`` (degrees, ``units`` attribute)
    and its ``center`` as a group attribute. ``metadata`` (JSON-serialisable) becomes attributes
    of ``data``. ``chunks`` defaults to :func:`storage_chunks`.

    >>> import numpy as np
    >>> write_zarr("rec.zarr", np.zeros((4, 8, 8), np.float32))   # doctest: +SKIP
    PosixPath('rec.zarr')
    """
    import zarr

    volume, flats, darks, theta, group_attrs = _unpack(volume, theta)
    volume = _check_volume(volume)
    theta = _check_theta(theta, volume)
    data_attrs = _json_metadata(metadata)
    chunks = tuple(chunks or storage_chunks(tuple(volume.shape), np.dtype(volume.dtype).itemsize))
    with atomic_output(path, overwrite=overwrite) as tmp:
        group = zarr.open_group(store=str(tmp), mode="w")
        group.attrs.update(group_attrs)
        data = group.create_array("data", shape=volume.shape, dtype=volume.dtype, chunks=chunks)
        data.attrs.update(data_attrs)
        for sl, slab in _slabs(volume, chunks[0]):
            data[sl] = slab
        for key, ref in (("flats", flats), ("darks", darks)):
            if ref is not None:
                ref = np.asarray(ref)
                group.create_array(key, shape=ref.shape, dtype=ref.dtype)[...] = ref
        if theta is not None:
            th = group.create_array("theta", shape=theta.shape, dtype="float64")
            th[...] = np.degrees(theta)
            th.attrs["units"] = "degrees"
    return Path(path)


# ---------------------------------------------------------------------------- results written as they come
#: Volume formats the CLI and tasks write, by extension.
VOLUME_SUFFIXES = (".tif", ".tiff", ".h5", ".hdf5", ".zarr", ".npy")


class _NpyFile:
    """A ``.npy`` file filled by slabs with ordinary writes: no memory map, so the pages written
    never count against the process's memory (a memmap keeps them resident)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(self.file, header)
        self.offset, self.frame = self.file.tell(), int(np.prod(shape[1:])) * dtype.itemsize
        self.file.truncate(self.offset + shape[0] * self.frame)

    def __setitem__(self, key: slice, slab: np.ndarray) -> None:
        self.file.seek(self.offset + key.start * self.frame)
        self.file.write(np.ascontiguousarray(slab).tobytes())

    def close(self) -> None:
        self.file.close()


class VolumeSink:
    """A volume on disk being filled slab by slab along z: ``sink[a:b] = slab``.

    Made by :func:`open_volume`; counts non-finite values as they arrive so a result that is all
    NaN/inf is refused before it becomes a file.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, target: Any, description: dict | None = None):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._target = target  # array-like supporting slab assignment, or a TIFF writer
        self._description = description  # TIFF only: metadata for the file's description
        self._next = 0  # TIFF pages go in order
        self.written = 0
        self.nonfinite = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, key: slice | int, value: Any) -> None:
        start, stop, _ = (key if isinstance(key, slice) else slice(key, key + 1)).indices(self.shape[0])
        slab = np.asarray(value, dtype=self.dtype).reshape((stop - start,) + self.shape[1:])
        if self.dtype.kind == "f":
            self.nonfinite += slab.size - int(np.count_nonzero(np.isfinite(slab)))
        self.written += slab.size
        if hasattr(self._target, "write"):  # tifffile.TiffWriter: pages in order
            if start != self._next:
                raise RuntimeError(f"TIFF pages are written in order: expected z={self._next}, got {start}")
            for page in slab:
                self._target.write(page, contiguous=True, photometric="minisblack", metadata=self._description)
            self._next = stop
        else:
            self._target[slice(start, stop)] = slab

    def check(self, path: Path) -> None:
        """Refuse a result that is all NaN/inf (or incomplete); warn when some values are."""
        expected = int(np.prod(self.shape))
        if self.written < expected:
            raise ResultError(f"{path}: only {self.written} of {expected} values were computed; nothing written")
        if self.nonfinite == self.written and self.written:
            raise ResultError(
                f"the result for {path} is entirely NaN/inf (a broken model file, or input that is "
                "NaN/inf); nothing was written"
            )
        if self.nonfinite:
            warnings.warn(f"{path}: {self.nonfinite} of {self.written} values are NaN/inf", stacklevel=3)


@contextmanager
def open_volume(
    path: str | Path,
    shape: tuple[int, ...],
    dtype: Any = np.float32,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    metadata: dict[str, Any] | None = None,
) -> Iterator[VolumeSink]:
    """A :class:`VolumeSink` for ``path`` (format by extension) that becomes the file at the end.

    Lets a task write its result slab by slab as it computes it, so the whole volume never has
    to be in memory. Goes through :func:`atomic_output`; a result that is all NaN/inf raises
    :class:`ResultError` and leaves nothing (and the old output, if any, untouched).

    >>> with open_volume("rec.zarr", (100, 512, 512)) as out:       # doctest: +SKIP
    ...     for z in range(0, 100, 10):
    ...         out[z : z + 10] = reconstruct_rows(z, z + 10)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VOLUME_SUFFIXES:
        raise InputError(
            f"output {str(path)!r}: unknown format {suffix or '(no extension)'!r}; use one of {', '.join(VOLUME_SUFFIXES)}"
        )
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    metadata = _json_metadata(metadata)
    with atomic_output(path, overwrite=overwrite, inputs=inputs) as tmp:
        if suffix == ".npy":
            array = _NpyFile(tmp, shape, dtype)
            try:
                sink = VolumeSink(shape, dtype, array)
                yield sink
                sink.check(path)
            finally:
                array.close()
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(tmp, "w") as f:
                ds = f.create_dataset("/exchange/data", shape=shape, dtype=dtype, chunks=storage_chunks(shape, dtype.itemsize))
                for key, value in metadata.items():
                    if value is not None:
                        ds.attrs[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
                sink = VolumeSink(shape, dtype, ds)
                yield sink
                sink.check(path)
        elif suffix == ".zarr":
            import zarr

            group = zarr.open_group(store=str(tmp), mode="w")
            data = group.create_array("data", shape=shape, dtype=dtype, chunks=storage_chunks(shape, dtype.itemsize))
            data.attrs.update(metadata)
            sink = VolumeSink(shape, dtype, data)
            yield sink
            sink.check(path)
        else:
            import tifffile

            big = int(np.prod(shape)) * dtype.itemsize > BIGTIFF_BYTES
            with tifffile.TiffWriter(tmp, bigtiff=big) as tif:
                sink = VolumeSink(shape, dtype, tif, metadata)
                yield sink
                sink.check(path)


def write_volume(
    path: str | Path,
    volume: Any,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a result volume by the extension of ``path`` (.tif/.tiff/.h5/.hdf5/.zarr/.npy).

    Slab by slab through :func:`open_volume`: atomic, refuses existing outputs without
    ``overwrite`` and the input itself, and refuses a result that is all NaN/inf.

    >>> import numpy as np
    >>> write_volume("rec.npy", np.zeros((4, 8, 8), np.float32))   # doctest: +SKIP
    PosixPath('rec.npy')
    """
    volume = _check_volume(volume)
    if volume.ndim == 2:
        volume = np.asarray(volume)[None]
    with open_volume(path, volume.shape, volume.dtype, overwrite=overwrite, inputs=inputs, metadata=metadata) as out:
        for sl, slab in _slabs(volume):
            out[sl] = slab
    return Path(path)
