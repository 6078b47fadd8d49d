"""Depth study: does TomoGAN gain from adjacent slices? Train d = 1, 3, 5 with one budget, compare.

Same generated data (random ellipsoids, low dose), same seed, steps, batch and crop for every
depth; the adversarial term is off so the comparison isolates the input depth and fits a CPU.
Scores: PSNR/SSIM against the normal-dose FBP on held-out ellipsoids and on unseen foam.

    python scripts/depth_study_tomogan.py --steps 600
"""

from __future__ import annotations

import argparse
import time

import torch

from napari_tomoml.progress import run_to_end
from napari_tomoml.training.data import generate_pairs
from napari_tomoml.training.tomogan import TomoGANLossConfig, train_tomogan_steps
from train_tomogan import measure, raw_pairs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--nz", type=int, default=16)
    p.add_argument("--n-train", type=int, default=8)
    p.add_argument("--i0", type=float, default=1e3)
    p.add_argument("--angle-step", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kw = dict(size=args.size, nz=args.nz, i0=args.i0, angle_step=args.angle_step, device=args.device)
    train = generate_pairs("ellipsoids", n_volumes=args.n_train, seed=args.seed, **kw)
    val = generate_pairs("ellipsoids", n_volumes=1, seed=args.seed + 1000, **kw)
    tests = {"ellipsoids (held out)": raw_pairs("ellipsoids", args, args.seed + 2000, 2),
             "foam (unseen)": raw_pairs("foam", args, args.seed + 3000, 2)}
    losses = TomoGANLossConfig(lambda_adv=0.0, lambda_vgg=0.0, lr_generator=args.lr)
    rows = []
    for depth in args.depths:
        t = time.perf_counter()
        net, _ = run_to_end(train_tomogan_steps(train, val, depth=depth, steps=args.steps, batch=args.batch,
                                                crop=args.crop, losses=losses, val_every=100, seed=args.seed,
                                                device=args.device))
        minutes = (time.perf_counter() - t) / 60
        rows.append((depth, minutes, {name: measure(net, pairs) for name, pairs in tests.items()}))
        print(f"depth {depth} trained in {minutes:.1f} min", flush=True)
    print(f"\nDepth study: {args.steps} steps x batch {args.batch} x {args.crop}^2 crops, MSE loss, I0={args.i0:g}")
    header = "".join(f" | {name:^24}" for name in tests)
    print(f"{'depth':>5} {'train min':>9}{header}")
    print(f"{'':>5} {'':>9}" + " | {:>11} {:>12}".format("PSNR dB", "SSIM") * len(tests))
    first = rows[0][2]
    print(f"{'input':>5} {'':>9}" + "".join(f" | {m['input_psnr']:11.2f} {m['input_ssim']:12.3f}" for m in first.values()))
    for depth, minutes, scores in rows:
        print(f"{depth:>5} {minutes:9.1f}" + "".join(f" | {m['psnr']:11.2f} {m['ssim']:12.3f}" for m in scores.values()))


if __name__ == "__main__":
    main()
