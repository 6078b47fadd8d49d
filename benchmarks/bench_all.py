"""Every speed figure of issue #11 beside its peer, measured in one run.

Run by hand (never in CI): ``python benchmarks/bench_all.py [--quick] [--before SRC] [--skip ...]``;
the table is printed and written to ``benchmarks/results.md`` with the machine's CPU model, core
count and load. Sections:

- ``fbp``: ms/slice and RMSE against the phantom at 512²×720, 1024²×1500 and 2048²×1500 for
  gridrec, the back-projection FBP, ASTRA's CPU FBP and scikit-image's iradon (analytic
  Shepp–Logan projections and scoring as in ``bench_fbp.py``).
- ``sirt``: SIRT seconds and peak memory (max RSS of a fresh process per run) at 255²×60,
  640²×181 (the tooth's geometry) and 1024²×1500, one slice and 8 slices, beside ASTRA's CPU SIRT
  (which reconstructs slice after slice: its 8-slice time is 8 one-slice runs). Where 100
  iterations would take many minutes, fewer are run and 100 are extrapolated (marked): the
  set-up with the first iteration once, plus 99 times the later iterations' mean.
- ``center``: find_center seconds and error at 640, 2048 and 4096 columns (1500 angles), on
  analytic projections with an off-centre axis.
- ``denoise``: ``tm.denoise`` seconds per 1024² slice at each precision beside the bare network,
  PSNR against fp32, GFLOP/s and the CPU's peak (``bench_denoise_precision.py``).

``--before SRC`` also runs the SIRT and centre cases with the package from another source tree
(e.g. ``git archive <commit> src | tar -x -C /tmp/before``, then ``--before /tmp/before/src``), as
the "before" column. All runs use the same threads (set ``OMP_NUM_THREADS`` for all).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fbp import analytic_sinogram, phantom_slice, rmse  # noqa: E402

# (size, angles, gridrec slices, back-projection slices, ASTRA slices, iradon slices)
FBP_CASES = [(512, 720, 16, 4, 2, 1), (1024, 1500, 8, 2, 1, 1), (2048, 1500, 4, 1, 1, 1)]
# (size, angles, iterations run for ours, for ASTRA and for the "before" tree; 0: not run)
SIRT_CASES = [(255, 60, 100, 100, 100), (640, 181, 30, 10, 2), (1024, 1500, 3, 2, 0)]
CENTER_SIZES = [640, 2048, 4096]
QUICK = {"fbp": [(256, 360, 4, 2, 1, 1)], "sirt": [(128, 60, 20, 20, 20)], "center": [256], "denoise": (256, 3)}
RESULTS = Path(__file__).resolve().parent / "results.md"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _sinograms(n: int, theta: np.ndarray, rows: int, center: float | None = None) -> np.ndarray:
    offset = 0.5 if center is None else 0.5 + n / 2 - center
    heights = np.linspace(-0.1, 0.1, rows)
    return np.stack([analytic_sinogram(n, theta, z, offset) for z in heights], axis=1)


# ---- children: one measurement per fresh process, so its peak memory is its own --------------


def child(kind: str, n: int, n_angles: int, rows: int, n_iter: int) -> dict:
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    if kind == "center":
        center = n / 2 + 0.0137 * n  # off the middle by a non-round amount
        sino = _sinograms(n, np.linspace(0, np.pi, 1500, endpoint=False), 1, center)[:, 0]
        from napari_tomoml.recon import find_center

        t0 = time.perf_counter()
        found = find_center(sino, np.linspace(0, np.pi, 1500, endpoint=False))
        return {"seconds": time.perf_counter() - t0, "error": found - center, "peak_mib": _peak_mib()}
    proj = _sinograms(n, theta, 1 if kind == "sirt-astra" else rows)  # ASTRA: one slice, timed x rows
    if kind == "sirt-astra":
        import astra

        base = _peak_mib()
        vol_geom = astra.create_vol_geom(n, n)
        proj_geom = astra.create_proj_geom("parallel", 1.0, n, theta)
        projector = astra.create_projector("linear", proj_geom, vol_geom)
        t0 = time.perf_counter()
        sino_id = astra.data2d.create("-sino", proj_geom, np.ascontiguousarray(proj[:, 0]))
        rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
        cfg = astra.astra_dict("SIRT")
        cfg.update(ProjectorId=projector, ProjectionDataId=sino_id, ReconstructionDataId=rec_id)
        cfg["option"] = {"MinConstraint": 0.0}
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg, 1)  # the set-up and the first iteration, then the rest
        first = time.perf_counter() - t0
        astra.algorithm.run(alg, n_iter - 1)
        seconds = time.perf_counter() - t0
    else:
        from napari_tomoml.recon import sirt

        base = _peak_mib()
        stamps = []
        t0 = time.perf_counter()
        sirt(proj, theta, n_iter=n_iter, device="cpu", callback=lambda *_: stamps.append(time.perf_counter()))
        seconds, first = time.perf_counter() - t0, stamps[0] - t0
    # 100 iterations: set-up and first iteration once, then the later iterations' mean pace
    per_100 = first + 99 * (seconds - first) / max(1, n_iter - 1) if n_iter > 1 else 100 * seconds
    if kind == "sirt-astra":
        per_100 *= rows  # ASTRA's CPU SIRT goes slice after slice
    return {"seconds": seconds, "per_100": per_100, "first": first, "peak_mib": _peak_mib(), "base_mib": base}


def run_child(kind: str, *args, src: str | None = None) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", kind, *map(str, args)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        return {"failed": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "?"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- sections ---------------------------------------------------------------------------------


def bench_fbp(cases) -> list[str]:
    from skimage.transform import iradon

    from napari_tomoml.recon import fbp
    from napari_tomoml.recon.fbp import circle_mask
    from napari_tomoml.recon.geometry import clear_cache

    lines = [
        "| slice × angles | engine | ms/slice | RMSE vs phantom | gridrec faster by |",
        "|---|---|---:|---:|---:|",
    ]
    for n, n_angles, n_grid, n_bp, n_astra, n_iradon in cases:
        theta = np.linspace(0, np.pi, n_angles, endpoint=False)
        heights = np.linspace(-0.1, 0.1, n_grid)
        data = np.stack([analytic_sinogram(n, theta, z, 0.5) for z in heights], axis=1)
        truth = np.stack([phantom_slice(n, z, 0.5) for z in heights])
        mask = circle_mask(n)
        rows = {}

        def timed(name, call, count, truth_rows, engine_mask=mask):
            clear_cache()
            t0 = time.perf_counter()
            rec = call()
            rows[name] = ((time.perf_counter() - t0) / count, rmse(rec, truth_rows, engine_mask))
            print(f"  {n}²×{n_angles} {name}: {1000 * rows[name][0]:.1f} ms/slice, RMSE {rows[name][1]:.4f}", flush=True)

        timed("gridrec", lambda: fbp(data, theta, device="cpu", method="gridrec"), n_grid, truth)
        timed(
            "back-projection FBP",
            lambda: fbp(data[:, :n_bp], theta, device="cpu", method="backprojection", chunk=n_bp),
            n_bp,
            truth[:n_bp],
        )
        try:
            import astra  # noqa: F401

            timed("ASTRA CPU FBP", lambda: fbp(data[:, :n_astra], theta, backend="astra"), n_astra, truth[:n_astra])
        except ImportError:
            print("  astra-toolbox is not installed (pip install napari-tomoml[astra])")
        sk_mask = np.hypot(*(np.mgrid[:n, :n] - n // 2)) <= n / 2 - 1
        sk_truth = np.stack([phantom_slice(n, z, 0.0) for z in heights[:n_iradon]])

        def run_iradon():
            return np.stack(
                [
                    iradon(analytic_sinogram(n, theta, z, 0.0).T, np.degrees(theta), filter_name="ramp", circle=True)
                    for z in heights[:n_iradon]
                ]
            )

        timed("scikit-image iradon", run_iradon, n_iradon, sk_truth, sk_mask)
        grid = rows["gridrec"][0]
        for name, (seconds, error) in rows.items():
            ratio = "" if name == "gridrec" else f"{seconds / grid:.1f}×"
            lines.append(f"| {n}²×{n_angles} | {name} | {1000 * seconds:.1f} | {error:.4f} | {ratio} |")
    return lines


def bench_sirt(cases, before: str | None) -> list[str]:
    lines = [
        "| slice × angles | slices | engine | iterations run | s per 100 iterations | peak RSS MiB (above imports) | ours faster by |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for n, n_angles, it_ours, it_astra, it_before in cases:
        for rows in (1, 8):
            runs = {"napari-tomoml": (run_child("sirt-ours", n, n_angles, rows, it_ours), it_ours)}
            if before and it_before:
                runs["before (--before tree)"] = (
                    run_child("sirt-ours", n, n_angles, rows, it_before, src=before),
                    it_before,
                )
            runs["ASTRA CPU SIRT"] = (run_child("sirt-astra", n, n_angles, rows, it_astra), it_astra)
            ours = runs["napari-tomoml"][0]
            for name, (res, n_iter) in runs.items():
                if "failed" in res:
                    lines.append(f"| {n}²×{n_angles} | {rows} | {name} | {n_iter} | failed: {res['failed']} | | |")
                    continue
                per100 = res["per_100"]
                mark = "" if n_iter == 100 else " (extrapolated)"
                ratio = ""
                if name != "napari-tomoml" and "failed" not in ours:
                    ratio = f"{per100 / ours['per_100']:.1f}×"
                mib = f"{res['peak_mib']:.0f} ({res['peak_mib'] - res['base_mib']:.0f})"
                print(f"  SIRT {n}²×{n_angles} ×{rows} {name}: {per100:.1f} s/100 it, {mib} MiB", flush=True)
                lines.append(f"| {n}²×{n_angles} | {rows} | {name} | {n_iter} | {per100:.1f}{mark} | {mib} | {ratio} |")
    return lines


def bench_center(sizes, before: str | None) -> list[str]:
    lines = ["| columns × angles | engine | seconds | error (px) |", "|---|---|---:|---:|"]
    for n in sizes:
        runs = {"napari-tomoml": run_child("center", n, 1500, 1, 0)}
        if before:
            runs["before (--before tree)"] = run_child("center", n, 1500, 1, 0, src=before)
        for name, res in runs.items():
            if "failed" in res:
                lines.append(f"| {n}×1500 | {name} | failed: {res['failed']} | |")
                continue
            print(f"  find_center {n} {name}: {res['seconds']:.2f} s, error {res['error']:+.3f}", flush=True)
            lines.append(f"| {n}×1500 | {name} | {res['seconds']:.2f} | {res['error']:+.3f} |")
    return lines


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, to check the script")
    parser.add_argument("--before", help="a source tree (its src/) to run as the 'before' column")
    parser.add_argument("--skip", nargs="*", default=[], choices=["fbp", "sirt", "center", "denoise"])
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *numbers = args.child
        print(json.dumps(child(kind, *map(int, numbers))))
        return

    load_start = os.getloadavg()
    header = [
        "# Issue #11 benchmarks (`python benchmarks/bench_all.py`)",
        "",
        f"CPU: {_cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); "
        f"load average at start {load_start[0]:.1f}.",
        "",
    ]
    sections = []

    def report(title: str, lines: list[str]) -> None:
        sections.extend([f"## {title}", "", *lines, ""])
        load = f" Load average after {title}: {os.getloadavg()[0]:.1f}."
        text = "\n".join(header[:2] + [header[2] + load] + header[3:] + sections)
        if not args.quick:  # after every section, so a long run leaves what it has measured
            args.output.write_text(text + "\n")
        print("\n" + text, flush=True)

    sizes = QUICK if args.quick else {"fbp": FBP_CASES, "sirt": SIRT_CASES, "center": CENTER_SIZES,
                                      "denoise": (1024, 3)}
    if "fbp" not in args.skip:
        report("FBP", bench_fbp(sizes["fbp"]))
    if "center" not in args.skip:
        report("find_center (Vo)", bench_center(sizes["center"], args.before))
    if "sirt" not in args.skip:
        report("SIRT", bench_sirt(sizes["sirt"], args.before))
    if "denoise" not in args.skip:
        from bench_denoise_precision import bench_precision

        report("TomoGAN denoising by precision", bench_precision(*sizes["denoise"]))


if __name__ == "__main__":
    main()
