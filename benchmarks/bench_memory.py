"""Peak memory of ``tomoml reconstruct`` and ``tomoml denoise`` on scans larger than memory allows.

Writes a raw DXchange scan (default 720 x 768 x 1024 float32 = 2.1 GiB, the scan of issue #14)
and a float32 volume (default 512 x 1024 x 1024 = 2 GiB) to a temporary folder, runs the
installed CLI on them as a user would, samples the resident memory (RSS) of the process and its
children every 50 ms, and deletes everything afterwards. The peer, measured in the same run: the
in-memory API path (``tm.normalize`` + ``tm.reconstruct`` of rows held in RAM) on a band of
rows, against ``tomoml reconstruct --rows`` of the same band, for the memory and the speed that
slab-by-slab processing costs.

    python benchmarks/bench_memory.py                      # full sizes (slow on a small CPU)
    python benchmarks/bench_memory.py --memory 1GiB --denoise-seconds 600
    python benchmarks/bench_memory.py --scan 720 64 256 --volume 8 256 256   # a quick look

``--denoise-seconds`` stops the denoise after that long (CPU TomoGAN is ~3 s per 1024² slice
per core); the peak RSS is then that of the slices done, reported with their count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(cmd: list[str], timeout: float | None = None) -> dict:
    """Run ``cmd``; return its exit code, wall time, peak RSS (bytes) and the last stderr line."""
    start = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    proc = psutil.Process(popen.pid)
    peak, stopped = 0, False
    err_tail: list[str] = []
    reader = threading.Thread(target=lambda: err_tail.extend(popen.stderr.read().replace("\r", "\n").splitlines()))
    reader.start()
    while popen.poll() is None:
        peak = max(peak, tree_rss(proc))
        if timeout is not None and time.perf_counter() - start > timeout:
            popen.kill()
            stopped = True
            break
        time.sleep(0.05)
    popen.wait()
    reader.join()
    out = popen.stdout.read()
    progress = [line for line in err_tail if "/" in line and "|" in line]
    shown = " ".join(cmd[1:]) if cmd[1] != "-c" else "in-memory API " + " ".join(cmd[3:])
    return {"cmd": shown, "rc": popen.returncode, "seconds": time.perf_counter() - start,
            "peak_rss_gib": peak / 2**30, "stopped_after_timeout": stopped, "stdout": out.strip(),
            "last_progress": progress[-1].strip() if progress else None,
            "stderr_tail": [line for line in err_tail if line.strip()][-2:]}


def write_scan(path: Path, shape: tuple[int, int, int]) -> None:
    """Raw counts of a cylinder of discs, written lazily block by block (never whole in memory)."""
    import dask.array as da

    from napari_tomoml.io.scan import Scan
    from napari_tomoml.io.writers import write_hdf5

    n_angles, n_rows, n_cols = shape
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    x = np.arange(n_cols) - n_cols / 2 + 0.5
    discs = [(0.0, 0.0, 0.4 * n_cols, 0.01), (0.15 * n_cols, 0.1 * n_cols, 0.1 * n_cols, 0.02)]

    def block(_, block_info=None):
        (a0, a1), (r0, r1), _ = block_info[None]["array-location"]
        line = np.zeros((a1 - a0, n_cols))
        for cx, cy, r, mu in discs:  # chord lengths through each disc at every angle
            offset = cx * np.cos(theta[a0:a1]) + cy * np.sin(theta[a0:a1])
            line += mu * 2 * np.sqrt(np.clip(r**2 - (x[None] - offset[:, None]) ** 2, 0, None))
        counts = 10 + 1000 * np.exp(-line)
        return np.broadcast_to(counts[:, None, :], (a1 - a0, r1 - r0, n_cols)).astype(np.float32)

    lazy = da.zeros(shape, chunks=(8, n_rows, n_cols), dtype=np.float32).map_blocks(block, dtype=np.float32)
    flats = np.full((4, n_rows, n_cols), 1010, np.float32)
    darks = np.full((2, n_rows, n_cols), 10, np.float32)
    write_hdf5(path, Scan(lazy, theta, flats, darks))


def write_volume(path: Path, shape: tuple[int, int, int]) -> None:
    import dask.array as da

    from napari_tomoml.io.writers import write_hdf5

    lazy = da.random.default_rng(0).standard_normal(shape, chunks=(4,) + shape[1:], dtype=np.float32)
    write_hdf5(path, lazy + 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scan", type=int, nargs=3, default=[720, 768, 1024], metavar=("ANGLES", "ROWS", "COLS"))
    parser.add_argument("--volume", type=int, nargs=3, default=[512, 1024, 1024], metavar=("Z", "Y", "X"))
    parser.add_argument("--memory", default="1GiB", help="tomoml reconstruct --memory")
    parser.add_argument("--peer-rows", type=int, default=32, help="rows of the in-memory peer comparison")
    parser.add_argument("--denoise-seconds", type=float, default=None, help="stop the denoise after this long")
    parser.add_argument("--denoise-batch", default="4", help="tomoml denoise --batch (tiles at once)")
    parser.add_argument("--skip", choices=["reconstruct", "denoise"], action="append", default=[])
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    args = parser.parse_args()
    exe = [sys.executable, "-m", "napari_tomoml.cli"]
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=args.tmp))
    results: dict = {"machine": f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM",
                     "load_average": os.getloadavg()}
    try:
        if "reconstruct" not in args.skip:
            scan = folder / "scan.h5"
            t = time.perf_counter()
            write_scan(scan, tuple(args.scan))
            results["scan"] = {"shape": args.scan, "gib": scan.stat().st_size / 2**30,
                               "write_seconds": time.perf_counter() - t}
            rows = f"0:{args.peer_rows}"
            peer_code = (
                "import sys, numpy as np, napari_tomoml as tm\n"
                "s = tm.load_scan(sys.argv[1]); r = slice(0, int(sys.argv[2]))\n"
                "p = tm.normalize(np.asarray(s.projections[:, r]), s.flats[:, r], s.darks[:, r])\n"
                "v, _ = tm.reconstruct(p, s.theta, device='cpu'); np.save(sys.argv[3], v)\n"
            )
            results["peer_in_memory_api"] = run_measured(
                [sys.executable, "-c", peer_code, str(scan), str(args.peer_rows), str(folder / "peer.npy")])
            results["peer_cli_same_rows"] = run_measured(
                [*exe, "reconstruct", str(scan), str(folder / "band.npy"), "--rows", rows, "--memory", args.memory,
                 "--device", "cpu", "-q"])
            results["reconstruct"] = run_measured(
                [*exe, "reconstruct", str(scan), str(folder / "rec.h5"), "--memory", args.memory, "--device", "cpu"])
            for name in ("peer.npy", "band.npy", "rec.h5"):
                (folder / name).unlink(missing_ok=True)
            scan.unlink()
        if "denoise" not in args.skip:
            vol = folder / "volume.h5"
            write_volume(vol, tuple(args.volume))
            results["volume"] = {"shape": args.volume, "gib": vol.stat().st_size / 2**30}
            results["denoise"] = run_measured(
                [*exe, "denoise", str(vol), str(folder / "den.npy"), "--device", "cpu", "--batch", args.denoise_batch], timeout=args.denoise_seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
