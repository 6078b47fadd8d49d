"""Alignment benchmark: shift error, seconds and reconstruction quality per method.

    python benchmarks/bench_align.py [--stacks 3] [--n 64] [--rows 32] [--angles 180] [--tooth]

Held-out simulated stacks (seeds never used in training; random ellipsoids like the training
data, and porous "foam" the learned model never saw), σx = 4 px, σy = 1 px (drift + jitter, like
the 3-D CNN notebook), without noise, with 1000 photons/pixel, and with background drift and 0.2° tilts added. For each method:

- RMS residual shift (px) after removing the unobservable rigid part (a cos + b sin + c of dx,
  the mean of dy), and the seconds it took;
- PSNR (dB) of the FBP of the stack, before and after undoing the estimated shifts, against the
  FBP of the same sample scanned without misalignment (the estimate's unobservable part is set
  to the truth's first: it only moves the reconstruction and no method can know it).

With ``--tooth``: the real tooth scan (../shared/data/real/tooth.h5, well aligned), the FBP
sharpness (mean gradient magnitude inside the sample, and the image variance) before and after
``joint``: alignment must not make a good scan worse.

Peers: tomopy's align_seq/align_joint are not installed here; ``xcorr`` is the sequential peer
measured in the same run, and ``moments`` (the learned predictor with an untrained network, i.e.
plain centroids) shows what training adds. Figures depend on the machine's load (shared CPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_tomoml.models.aligner import MomentAligner
from napari_tomoml.recon import fbp
from napari_tomoml.recon.align import remove_unobservable, residual_rms
from napari_tomoml.recon.fbp import circle_mask
from napari_tomoml.sim.misalign import simulate_misaligned
from napari_tomoml.tasks.align import align_steps, apply_shifts
from napari_tomoml.progress import run_to_end

METHODS = ("xcorr", "moments", "learned", "joint")
ROOT = Path(__file__).resolve().parents[1]


def psnr(rec: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    diff = (rec - ref)[:, mask]
    span = float(ref[:, mask].max() - ref[:, mask].min())
    return float(10 * np.log10(span**2 / max(float(np.mean(diff**2)), 1e-20)))


def recon(proj: np.ndarray, theta: np.ndarray, center: float) -> np.ndarray:
    return fbp(proj[:, 4:-4], theta, center, device="cpu")  # rows a vertical shift leaves intact


def run_stack(stack, twin) -> dict:
    mask = circle_mask(stack.projections.shape[-1])
    ref = recon(twin.projections, twin.theta, twin.center)
    rigid = stack.shifts - remove_unobservable(stack.shifts, stack.theta)
    row = {"before_rms": residual_rms(np.zeros_like(stack.shifts), stack.shifts, stack.theta),
           "before_psnr": psnr(recon(stack.projections, stack.theta, stack.center), ref, mask)}
    for method in METHODS:
        start = time.perf_counter()
        options = {"center": stack.center} if method == "joint" else {}
        if method == "moments":  # ablation: the learned predictor with an untrained network (plain centroids)
            options = {"model": MomentAligner()}
        name = "learned" if method == "moments" else method
        shifts, meta = run_to_end(align_steps(stack.projections, stack.theta, method=name, device="cpu", **options))
        row[f"{method}_s"] = time.perf_counter() - start
        row[f"{method}_rms"] = residual_rms(shifts, stack.shifts, stack.theta)
        full = remove_unobservable(shifts, stack.theta) + rigid
        aligned = apply_shifts(stack.projections, full, device="cpu")
        row[f"{method}_psnr"] = psnr(recon(aligned, stack.theta, stack.center), ref, mask)
    return row


def sharpness(rec: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    gy, gx = np.gradient(rec, axis=(-2, -1))
    return float(np.hypot(gy, gx)[:, mask].mean()), float(rec[:, mask].var())


def tooth() -> None:
    from napari_tomoml import find_center, load_scan, normalize

    path = ROOT / ".." / "shared" / "data" / "real" / "tooth.h5"
    if not path.is_file():
        print(f"tooth scan {path} absent: skipped")
        return
    scan = load_scan(path)
    proj = normalize(scan)
    center = float(find_center(proj, scan.theta))
    n = proj.shape[-1]
    mask = circle_mask(n) & (np.hypot(*np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2)) < 0.45 * n)
    before = sharpness(fbp(proj, scan.theta, center, device="cpu"), mask)
    start = time.perf_counter()
    shifts, meta = run_to_end(align_steps(proj, scan.theta, method="joint", center=center, device="cpu"))
    seconds = time.perf_counter() - start
    after = sharpness(fbp(apply_shifts(proj, shifts, device="cpu"), scan.theta, center, device="cpu"), mask)
    print(f"\ntooth ({proj.shape[0]} x {proj.shape[1]} x {n}, centre {center:.2f} px): joint {seconds:.1f} s, "
          f"refined centre {meta['center_refined']:.2f} px, |dx| max {np.abs(shifts[:, 1]).max():.2f} px, "
          f"rms {np.sqrt(np.mean(shifts[:, 1] ** 2)):.2f} px")
    print(f"  sharpness (mean |gradient|): before {before[0]:.5f}  after {after[0]:.5f}  ({after[0] / before[0]:.3f}x)")
    print(f"  variance:                    before {before[1]:.6f}  after {after[1]:.6f}  ({after[1] / before[1]:.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=3)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--tooth", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"held-out stacks: {args.stacks} per case, phantom {args.n} px, {args.rows} rows, {args.angles} angles, "
          "sigma_x 4 px, sigma_y 1 px; RMS residual px (rigid part removed) / seconds / PSNR dB vs unshifted")
    header = f"{'case':<26}{'before':>15}" + "".join(f"{m:>24}" for m in METHODS)
    print(header)
    cases = [("ellipsoids", "clean", {}), ("ellipsoids", "1000 photons", {"i0": 1e3}),
             ("ellipsoids", "+ drift, tilts", {"i0": 1e3, "background": 0.02, "tilt_deg": 0.2}),
             ("foam", "clean", {}), ("foam", "1000 photons", {"i0": 1e3})]
    for family, label, extra in cases:
        rows = []
        for k in range(args.stacks):
            seed = 50_000 + k
            common = dict(n=args.n, rows=args.rows, n_angles=args.angles, family=family, seed=seed, **extra)
            stack = simulate_misaligned(**common)
            twin = simulate_misaligned(**common, shifts=np.zeros_like(stack.shifts))
            rows.append(run_stack(stack, twin))
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        line = f"{family + ', ' + label:<26}{mean['before_rms']:>6.2f} / {mean['before_psnr']:>5.1f} dB"
        for m in METHODS:
            line += f"{mean[m + '_rms']:>9.3f} /{mean[m + '_s']:>5.1f} s /{mean[m + '_psnr']:>5.1f}"
        print(line, flush=True)
    if args.tooth:
        tooth()


if __name__ == "__main__":
    main()
