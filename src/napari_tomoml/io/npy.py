"""A large ``.npy`` read frame by frame with plain file reads, for dask (no memory map).

A memory-mapped ``.npy`` is an ``ndarray``: slice-by-slice tasks would check it as a whole, and
every page it touches stays mapped, counted in the process's memory, until the map is closed.
:class:`NpyFrames` reads the frames asked for into ordinary buffers, as h5py and zarr do.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "v.npy")
>>> np.save(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
>>> NpyFrames.open(path)[1, :, 2].tolist()
[14.0, 18.0, 22.0]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._common import FrameSource


class NpyFrames(FrameSource):
    """Frames (first axis) of a C-ordered ``.npy`` file at byte ``offset``."""

    serial_reads = False  # each read opens the file itself

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any, offset: int):
        super().__init__(path, shape, dtype)
        self.offset = int(offset)

    @classmethod
    def open(cls, path: str | Path) -> NpyFrames:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(mapped, np.memmap) or not mapped.flags.c_contiguous:
            raise ValueError(f"{path}: not a C-ordered .npy array")
        return cls(Path(path), mapped.shape, mapped.dtype, mapped.offset)

    def _read(self, frames: np.ndarray, rest: tuple[Any, ...]) -> np.ndarray:
        frame = int(np.prod(self.shape[1:]))
        runs = np.split(frames, np.flatnonzero(np.diff(frames) != 1) + 1)  # contiguous frames: one read each
        blocks = []
        with open(self.path, "rb") as fh:
            for run in runs:
                fh.seek(self.offset + int(run[0]) * frame * self.dtype.itemsize)
                block = np.fromfile(fh, self.dtype, count=len(run) * frame).reshape((len(run), *self.shape[1:]))
                blocks.append(block[(slice(None), *rest)])
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
