"""Batch runs as a beamline user makes them: failures, resume, kill -9, Dask, out-of-core.

    python benchmarks/bench_batch.py folder          # bad files, resume timing, kill -9 + rerun
    python benchmarks/bench_batch.py dask            # local:2 against --workers 1: outputs and wall time
    python benchmarks/bench_batch.py ooc --gib 8     # out-of-core reconstruct of a GiB-sized raw scan

``folder``: a folder of raw HDF5 scans plus one truncated and one zarr scan (another format) runs
through ``tomoml batch reconstruct`` (the installed CLI, as a user would): exit code, summary; a
second run's time per skipped file; a run killed with SIGKILL once some outputs exist, rerun,
compared byte for byte with an uninterrupted run. ``dask``: the same folder with
``--scheduler local:2`` and ``--workers 1``: identical bytes, wall times side by side.
``ooc``: a raw DXchange scan of ``--gib`` GiB (720 angles, ``--cols`` columns (128), as many rows as that
takes: a narrow detector keeps FBP cheap so the run is about I/O and memory) written to /tmp,
reconstructed by ``tomoml batch reconstruct --memory 1GiB`` with the peak RSS of the process
tree sampled every 50 ms; the peer in the same run is the in-memory API on a band of rows.
``chunks``: one raw scan of ``--shape`` reconstructed by ``tomoml batch`` in one process and as
slabs of rows on ``--scheduler local:2`` (tasks/chunked.py): identical bytes, wall times.
``ooc-denoise``: TomoGAN on a float32 volume of ``--gib`` GiB (1024² slices) in HDF5, kept in the
XDG cache (``$XDG_CACHE_HOME/napari-tomoml/bench/``) and written only when absent. ``tomoml
denoise`` opens the file lazily and denoises a band of ``--slices`` slices (``--rows``), or the
whole file with ``--slices 0`` (fp32 TomoGAN costs seconds per 1024² slice on a CPU, so a whole
8 GiB volume takes hours at fp32; ``--precision int8`` is ~3x faster), with the peak RSS of the
process tree sampled every 50 ms, beside the in-memory API on a band of at most 16 of the same
slices read into RAM (their outputs compared bit for bit when the two runs cover the same rows).
``ooc-npy``: ``tomoml denoise`` of a ``.npy`` volume of ``--gib`` GiB (in /tmp) for ``--seconds``,
then stopped: the peak RSS while it reads the file (normalisation, first slices).
Everything else written is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import run_measured, write_scan  # noqa: E402

TOMOML = [sys.executable, "-m", "napari_tomoml.cli"]


def make_folder(folder: Path, n: int, shape: tuple[int, int, int]) -> None:
    from napari_tomoml.io.scan import Scan
    from napari_tomoml.io.writers import write_hdf5, write_zarr

    rng = np.random.default_rng(0)
    theta = np.linspace(0, np.pi, shape[0], endpoint=False)
    flats = np.full((2,) + shape[1:], 1000, np.float32)
    for i in range(n):
        counts = rng.poisson(1000 * np.exp(-0.5 * rng.random(shape))).astype(np.float32)
        write_hdf5(folder / f"scan_{i:02d}.h5", Scan(counts, theta, flats, np.zeros_like(flats)))
    write_zarr(folder / f"scan_{n:02d}.zarr", Scan(counts, theta, flats, np.zeros_like(flats)))
    whole = (folder / "scan_00.h5").read_bytes()
    (folder / f"scan_{n + 1:02d}.h5").write_bytes(whole[: len(whole) // 2])  # cut short


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy"))}


def batch(*args: str) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run([*TOMOML, "batch", *args, "-q"], capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - start, proc.stdout


def bench_folder(tmp: Path, n: int, shape) -> dict:
    make_folder(tmp / "night", n, shape)
    rc, wall, out = batch("reconstruct", str(tmp / "night"), str(tmp / "whole"))
    summary = list(__import__("csv").DictReader(open(tmp / "whole" / "batch-summary.csv")))
    failed = {Path(r["input"]).name: r["error"] for r in summary if r["status"] == "failed"}
    rc2, wall2, out2 = batch("reconstruct", str(tmp / "night"), str(tmp / "whole"))
    again = list(__import__("csv").DictReader(open(tmp / "whole" / "batch-summary.csv")))
    skipped = [float(r["seconds"]) for r in again if r["status"] == "skipped"]

    # kill -9 once a third of the outputs exist, then run again
    proc = subprocess.Popen([*TOMOML, "batch", "reconstruct", str(tmp / "night"), str(tmp / "killed"), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and len(list((tmp / "killed").glob("*.npy"))) < max(1, n // 3):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = sorted(p.name for p in (tmp / "killed").iterdir())
    rc3, _, out3 = batch("reconstruct", str(tmp / "night"), str(tmp / "killed"))
    return {
        "inputs": n + 2, "scan_shape": shape, "first_run": {"exit": rc, "wall_s": round(wall, 2), "stdout": out.strip()},
        "failed": failed,
        "second_run": {"exit": rc2, "wall_s": round(wall2, 2), "skipped": len(skipped),
                       "max_seconds_per_skipped_file": max(skipped), "wall_s_per_file": round(wall2 / (n + 2), 3)},
        "kill9": {"files_on_disk_at_kill": at_kill, "rerun_exit": rc3, "rerun_stdout": out3.strip(),
                  "identical_to_uninterrupted": outputs(tmp / "killed") == outputs(tmp / "whole"),
                  "temporaries_left": [p.name for p in (tmp / "killed").iterdir() if p.name.startswith(".")]},
    }


def bench_dask(tmp: Path, n: int, shape) -> dict:
    make_folder(tmp / "night", n, shape)
    rc1, wall1, _ = batch("reconstruct", str(tmp / "night"), str(tmp / "one"), "--workers", "1")
    rc2, wall2, _ = batch("reconstruct", str(tmp / "night"), str(tmp / "two"), "--scheduler", "local:2")
    return {"inputs": n + 2, "scan_shape": shape, "cores": os.cpu_count(),
            "workers_1": {"exit": rc1, "wall_s": round(wall1, 2)},
            "local_2": {"exit": rc2, "wall_s": round(wall2, 2)},
            "ratio_workers1_over_local2": round(wall1 / wall2, 2),
            "identical_outputs": outputs(tmp / "one") == outputs(tmp / "two"),
            "outputs": len(outputs(tmp / "one"))}


def bench_ooc(tmp: Path, gib: float, memory: str, n_cols: int = 128) -> dict:
    n_angles = 720
    n_rows = int(gib * 2**30 / (4 * n_angles * n_cols))
    (tmp / "big").mkdir()
    scan = tmp / "big" / "big_scan.h5"
    t0 = time.perf_counter()
    write_scan(scan, (n_angles, n_rows, n_cols))
    write_s = time.perf_counter() - t0
    size = scan.stat().st_size
    run = run_measured([*TOMOML, "batch", "reconstruct", str(tmp / "big"), str(tmp / "recon"), "--memory", memory,
                        "--center", str(n_cols / 2), "--device", "cpu", "-q"])
    # peer: the in-memory API on a band of rows (what fits), same process kind
    band = min(n_rows, 512)
    code = (f"import time, numpy as np, napari_tomoml as tm; s = tm.load_scan({str(scan)!r}); t = time.perf_counter(); "
            f"p = tm.normalize(tm.Scan(np.asarray(s.projections[:, :{band}]), s.theta, np.asarray(s.flats[:, :{band}]), "
            f"np.asarray(s.darks[:, :{band}]))); v, _ = tm.reconstruct(p, s.theta, center={n_cols / 2}, device='cpu'); "
            f"print(time.perf_counter() - t)")
    peer = run_measured([sys.executable, "-c", code])
    rows_per_s = n_rows / run["seconds"]
    return {"file_gib": round(size / 2**30, 2), "shape": [n_angles, n_rows, n_cols], "write_s": round(write_s, 1),
            "batch": {"exit": run["rc"], "wall_s": round(run["seconds"], 1), "peak_rss_gib": round(run["peak_rss_gib"], 3),
                      "memory_option": memory, "rows_per_s": round(rows_per_s, 1),
                      "MiB_per_s": round(size / 2**20 / run["seconds"], 1), "stdout": run["stdout"]},
            "in_memory_peer": {"rows": band, "peak_rss_gib": round(peer["peak_rss_gib"], 3),
                               "rows_per_s": round(band / float(peer["stdout"] or "nan"), 1) if peer["rc"] == 0 else None,
                               "rc": peer["rc"]}}


def bench_chunks(tmp: Path, shape) -> dict:
    """One scan split into slabs of rows on ``local:2`` against the whole scan in one process."""
    (tmp / "one").mkdir()
    write_scan(tmp / "one" / "scan.h5", tuple(shape))
    rc1, wall1, _ = batch("reconstruct", str(tmp / "one"), str(tmp / "whole"), "--device", "cpu")
    rc2, wall2, out2 = batch("reconstruct", str(tmp / "one"), str(tmp / "slabs"), "--device", "cpu",
                             "--scheduler", "local:2")
    return {"scan_shape": list(shape), "workers_1": {"exit": rc1, "wall_s": round(wall1, 2)},
            "local_2_slabs": {"exit": rc2, "wall_s": round(wall2, 2), "stdout": out2.strip()},
            "ratio_workers1_over_local2": round(wall1 / wall2, 2),
            "identical_outputs": outputs(tmp / "whole") == outputs(tmp / "slabs") != {}}


def big_volume(gib: float, side: int = 1024) -> tuple[Path, float | None]:
    """A float32 volume of ``gib`` GiB (``side``² slices of discs + noise) in the XDG cache; its
    path and the seconds it took to write (None: it was there already)."""
    from napari_tomoml.io.writers import open_volume

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-tomoml" / "bench"
    n = int(np.ceil(gib * 2**30 / (4 * side * side)))
    path = cache / f"volume_{n}x{side}x{side}.h5"
    if path.exists():
        return path, None
    yy, xx = np.mgrid[:side, :side] - side / 2 + 0.5
    base = ((np.hypot(yy, xx) < 0.4 * side) * 1.0 + (np.hypot(yy - 0.1 * side, xx) < 0.08 * side) * 0.5).astype(np.float32)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with open_volume(path, (n, side, side), metadata={"kind": "volume", "bench": "bench_batch ooc-denoise"}) as sink:
        for a in range(0, n, 16):
            b = min(n, a + 16)
            sink[a:b] = base[None] + 0.1 * rng.standard_normal((b - a, side, side), dtype=np.float32)
    return path, time.perf_counter() - t0


def bench_ooc_denoise(tmp: Path, gib: float, slices: int, precision: str = "fp32") -> dict:
    path, write_s = big_volume(gib)
    import napari_tomoml as tm

    n = tm.read_volume(path).shape[0]
    whole = slices <= 0
    slices = n if whole else slices
    a, b = (0, n) if whole else (n // 2, n // 2 + slices)
    band = [] if whole else ["--rows", f"{a}:{b}"]
    run = run_measured([*TOMOML, "denoise", str(path), str(tmp / "band.h5"), *band, "--device", "cpu",
                        "--precision", precision, "-q"])
    pa = n // 2 if whole else a
    pb = pa + min(slices, 16)
    code = (f"import time, numpy as np, napari_tomoml as tm; t = time.perf_counter(); "
            f"v = np.asarray(tm.read_volume({str(path)!r}).data[{pa}:{pb}]); "
            f"d = tm.denoise(v, device='cpu', precision={precision!r}); print(time.perf_counter() - t); "
            f"np.save({str(tmp / 'peer.npy')!r}, d)")
    peer = run_measured([sys.executable, "-c", code])
    same = None
    if run["rc"] == 0 and peer["rc"] == 0 and (pa, pb) == (a, b):  # the same slices, the same result?
        same = bool(np.array_equal(np.asarray(tm.read_volume(tmp / "band.h5").data), np.load(tmp / "peer.npy")))
    mib = slices * 4 * np.prod(tm.read_volume(path).shape[1:]) / 2**20
    return {"file": str(path), "file_gib": round(path.stat().st_size / 2**30, 2), "shape": list(tm.read_volume(path).shape),
            "write_s": None if write_s is None else round(write_s, 1), "rows": [a, b],
            "out_of_core": {"exit": run["rc"], "wall_s": round(run["seconds"], 1),
                            "peak_rss_gib": round(run["peak_rss_gib"], 3),
                            "slices_per_s": round(slices / run["seconds"], 3),
                            "MiB_per_s": round(mib / run["seconds"], 2), "stderr": run["stderr_tail"]},
            "in_memory_peer": {"exit": peer["rc"], "wall_s": round(peer["seconds"], 1),
                               "peak_rss_gib": round(peer["peak_rss_gib"], 3),
                               "rows": [pa, pb], "slices_per_s": round((pb - pa) / peer["seconds"], 3),
                               "denoise_s": peer["stdout"], "stderr": peer["stderr_tail"]},
            "identical_result": same}


def bench_ooc_npy(tmp: Path, gib: float, seconds: float) -> dict:
    """``tomoml denoise`` of a ``.npy`` volume of ``gib`` GiB for ``seconds`` (then stopped): its peak RSS."""
    side = 1024
    n = int(np.ceil(gib * 2**30 / (4 * side * side)))
    path = tmp / "volume.npy"
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, side, side))
    rng = np.random.default_rng(0)
    for a in range(0, n, 32):
        mapped[a : a + 32] = rng.random((min(n, a + 32) - a, side, side), dtype=np.float32)
    mapped.flush()
    del mapped
    run = run_measured([*TOMOML, "denoise", str(path), str(tmp / "out.npy"), "--device", "cpu"], timeout=seconds)
    return {"file_gib": round(path.stat().st_size / 2**30, 2), "shape": [n, side, side], "ran_s": round(run["seconds"], 1),
            "stopped_after_timeout": run["stopped_after_timeout"], "peak_rss_gib": round(run["peak_rss_gib"], 3),
            "last_progress": run["last_progress"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["folder", "dask", "chunks", "ooc", "ooc-denoise", "ooc-npy"])
    parser.add_argument("--scans", type=int, default=8, help="good HDF5 scans in the folder")
    parser.add_argument("--shape", type=int, nargs=3, default=[360, 16, 256], help="angles rows cols of each scan")
    parser.add_argument("--gib", type=float, default=8.0, help="size of the out-of-core scan")
    parser.add_argument("--memory", default="1GiB", help="the batch's memory option for the out-of-core run")
    parser.add_argument("--cols", type=int, default=128, help="detector columns of the out-of-core scan")
    parser.add_argument("--slices", type=int, default=8, help="ooc-denoise: slices denoised (a band; 0: the whole file)")
    parser.add_argument("--precision", default="fp32", help="ooc-denoise: tm.denoise's precision (fp32, int8, auto)")
    parser.add_argument("--seconds", type=float, default=90, help="ooc-npy: how long the denoise runs before it is stopped")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_", dir="/tmp"))
    try:
        if args.what == "folder":
            result = bench_folder(tmp, args.scans, tuple(args.shape))
        elif args.what == "dask":
            result = bench_dask(tmp, args.scans, tuple(args.shape))
        elif args.what == "chunks":
            result = bench_chunks(tmp, args.shape)
        elif args.what == "ooc":
            result = bench_ooc(tmp, args.gib, args.memory, args.cols)
        elif args.what == "ooc-denoise":
            result = bench_ooc_denoise(tmp, args.gib, args.slices, args.precision)
        else:
            result = bench_ooc_npy(tmp, args.gib, args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({args.what: result}, indent=1))


if __name__ == "__main__":
    main()
