"""Open a multi-GiB scan without reading it: time to open, to read one projection and one
sinogram, and peak memory, for HDF5 (DXchange) and zarr. Run by hand, never in CI:

    .venv/bin/python benchmarks/bench_open_large.py [--dir /tmp] [--angles 768] [--rows 1024] [--cols 1024]

The scan (default 768 x 1024 x 1024 float32 = 3 GiB per format) is written chunk by chunk with
the package's own writers into a temporary folder under ``--dir``, which is deleted afterwards
unless ``--keep``. Each file is then opened in a fresh process, so its peak RSS shows what
opening and reading cost rather than what writing cost. The files were just written, so reads
come mostly from the page cache: the timings are best cases, the memory figures are not.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux's ``VmHWM`` belongs to this process image alone; ``ru_maxrss`` would carry over the
    parent's peak through fork + exec and hide the child's own figure.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(path: str) -> dict[str, float]:
    """Open ``path`` with load_scan and read a projection, a sinogram and contrast limits."""
    # libraries imported before the baseline, so "open" times opening rather than importing
    import dask.array  # noqa: F401
    import h5py  # noqa: F401
    import zarr  # noqa: F401

    from napari_tomoml.io import estimate_contrast_limits, load_scan

    baseline = _peak_rss_mib()
    t0 = time.perf_counter()
    scan = load_scan(path)
    t_open = time.perf_counter() - t0
    n, rows, _ = scan.shape
    t0 = time.perf_counter()
    projection = np.asarray(scan.projections[n // 2])
    t_proj = time.perf_counter() - t0
    t0 = time.perf_counter()
    sinogram = np.asarray(scan.projections[:, rows // 2, :])
    t_sino = time.perf_counter() - t0
    t0 = time.perf_counter()
    estimate_contrast_limits(scan.projections)
    t_clim = time.perf_counter() - t0
    nbytes = int(np.prod(scan.shape)) * np.dtype(scan.projections.dtype).itemsize
    return {
        "lazy": scan.lazy,
        "size_gib": nbytes / 2**30,
        "open_s": t_open,
        "projection_s": t_proj,
        "sinogram_s": t_sino,
        "contrast_s": t_clim,
        "projection_mib": projection.nbytes / 2**20,
        "sinogram_mib": sinogram.nbytes / 2**20,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": _peak_rss_mib(),
    }


def make_scan(folder: Path, shape: tuple[int, int, int]) -> dict[str, Path]:
    """Write the same synthetic scan as DXchange HDF5 and zarr, one dask chunk at a time."""
    import dask.array as da

    from napari_tomoml.io import Scan, write_hdf5, write_zarr

    rng = da.random.default_rng(0)
    projections = rng.random(shape, dtype=np.float32, chunks=(16,) + shape[1:])
    flats = np.ones((4,) + shape[1:], np.float32)
    scan = Scan(projections, np.linspace(0, np.pi, shape[0], endpoint=False), flats, flats * 0)
    paths = {}
    for name, writer, file in (("hdf5", write_hdf5, "scan.h5"), ("zarr", write_zarr, "scan.zarr")):
        t0 = time.perf_counter()
        paths[name] = writer(folder / file, scan)
        print(
            f"wrote {name:4s} {paths[name]} in {time.perf_counter() - t0:.1f} s, "
            f"writer peak RSS so far {_peak_rss_mib():.0f} MiB",
            flush=True,
        )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to put the temporary scan")
    parser.add_argument("--angles", type=int, default=768)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    folder = Path(tempfile.mkdtemp(prefix="tomoml-bench-", dir=args.dir))
    try:
        paths = make_scan(folder, (args.angles, args.rows, args.cols))
        print(
            f"{'format':6s} {'GiB':>5s} {'lazy':>5s} {'open s':>7s} {'proj s':>7s} {'sino s':>7s} "
            f"{'clim s':>7s} {'base MiB':>9s} {'peak MiB':>9s}"
        )
        for name, path in paths.items():
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(path)], check=True, capture_output=True, text=True
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{name:6s} {r['size_gib']:5.2f} {str(r['lazy']):>5s} {r['open_s']:7.3f} "
                f"{r['projection_s']:7.3f} {r['sinogram_s']:7.3f} {r['contrast_s']:7.3f} "
                f"{r['baseline_rss_mib']:9.0f} {r['peak_rss_mib']:9.0f}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
