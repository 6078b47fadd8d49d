"""Train the bundled TomoGAN model (``tomogan-lowdose``) on generated low-dose data. Reproducible.

Training data: random-ellipsoid phantoms (one family only) -> parallel-beam projections scaled
to 13.5 % minimum transmission -> Poisson noise at I0 photons/pixel -> FBP (input); FBP of the
noise-free projections (target). Validation on held-out ellipsoid volumes; the card also records
metrics on porous-rock/foam volumes, a family the model never saw.

Resumable: a checkpoint is written every validation to --checkpoint-dir; running the same
command again continues where it stopped (same batches, same result).

    python scripts/train_tomogan.py                       # the bundled model (44 min on 1 shared CPU core)
    python scripts/train_tomogan.py --steps 200 --out /tmp/quick --checkpoint-dir /tmp/quick-ckpt
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_tomoml.models.store import save_model
from napari_tomoml.progress import run_to_end
from napari_tomoml.tasks.denoise import denoise
from napari_tomoml.training.data import generate_pairs
from napari_tomoml.training.metrics import psnr, ssim
from napari_tomoml.training.tomogan import TomoGANLossConfig, train_tomogan_steps

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "src/napari_tomoml/weights/tomogan-lowdose")
    p.add_argument("--checkpoint-dir", type=Path, default=Path("/tmp/tomogan-lowdose-ckpt"))
    p.add_argument("--family", default="ellipsoids", help="phantom family to train on")
    p.add_argument("--test-family", default="foam", help="unseen family whose metrics go into the card")
    p.add_argument("--size", type=int, default=128, help="phantom width/height in pixels")
    p.add_argument("--nz", type=int, default=16, help="slices per phantom volume")
    p.add_argument("--n-train", type=int, default=16, help="training volumes")
    p.add_argument("--n-val", type=int, default=2, help="validation volumes (same family, other seeds)")
    p.add_argument("--i0", type=float, default=1e3, help="incident photons per detector pixel (low dose)")
    p.add_argument("--angle-step", type=int, default=1, help="keep every n-th angle in the input (sparse view)")
    p.add_argument("--depth", type=int, default=3, choices=(1, 3, 5, 7))
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--adv-start", type=int, default=3600, help="step where the critic and adversarial loss start")
    p.add_argument("--n-critic", type=int, default=1)
    p.add_argument("--lambda-mse", type=float, default=1.0)
    p.add_argument("--lambda-adv", type=float, default=1e-3)
    p.add_argument("--lambda-vgg", type=float, default=0.1, help="used only with --vgg")
    p.add_argument("--vgg", type=Path, default=None, help="torchvision VGG19 weights for the perceptual loss")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="initial generator learning rate (cosine decay)")
    p.add_argument("--lr-critic", type=float, default=1e-4)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    # on a shared machine one thread per process beats oversubscribed OpenMP spinning by ~2.5x
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def measure(net_or_path, volumes) -> dict[str, float]:
    """PSNR/SSIM of FBP input and of the denoised volume against the normal-dose FBP, in data units."""
    scores = {"input_psnr": [], "input_ssim": [], "psnr": [], "ssim": []}
    for noisy, clean in volumes:
        out = denoise(noisy, net_or_path, device="cpu")
        scores["input_psnr"].append(psnr(noisy, clean))
        scores["input_ssim"].append(ssim(noisy, clean))
        scores["psnr"].append(psnr(out, clean))
        scores["ssim"].append(ssim(out, clean))
    return {k: round(float(np.mean(v)), 4) for k, v in scores.items()}


def raw_pairs(family: str, args, seed: int, n: int):
    """Generated (noisy, clean) volumes in data units (un-normalised), for metrics."""
    from napari_tomoml.training.data import phantom_slab, simulate_pair

    return [
        simulate_pair(phantom_slab(family, args.size, args.nz, seed=seed + k), i0=args.i0,
                      angle_step=args.angle_step, seed=seed + 10_000 + k, device=args.device)
        for k in range(n)
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_kw = dict(size=args.size, nz=args.nz, i0=args.i0, angle_step=args.angle_step, device=args.device)
    t0 = time.perf_counter()
    train = generate_pairs(args.family, n_volumes=args.n_train, seed=args.seed, **data_kw)
    val = generate_pairs(args.family, n_volumes=args.n_val, seed=args.seed + 1000, **data_kw)
    print(f"generated {train.n_slices} training / {val.n_slices} validation slices in {time.perf_counter() - t0:.1f} s", flush=True)

    vgg = None
    if args.vgg is not None:
        from napari_tomoml.models.vgg import load_vgg19

        vgg = load_vgg19(args.vgg)
    losses = TomoGANLossConfig(
        lambda_mse=args.lambda_mse, lambda_adv=args.lambda_adv, lambda_vgg=args.lambda_vgg if vgg else 0.0,
        n_critic=args.n_critic, adv_start=args.adv_start, lr_generator=args.lr, lr_critic=args.lr_critic,
    )
    steps = train_tomogan_steps(
        train, val, depth=args.depth, steps=args.steps, batch=args.batch, crop=args.crop, losses=losses, vgg=vgg,
        val_every=args.val_every, checkpoint_dir=args.checkpoint_dir, seed=args.seed, device=args.device,
    )
    started = time.perf_counter()

    def report(p) -> None:
        if "validation" in p.data:
            v = p.data["validation"]
            losses_text = " ".join(f"{k}={x:.4g}" for k, x in p.data["losses"].items())
            print(f"step {p.done}/{p.total} {losses_text} | val_loss={v['val_loss']:.5f} psnr={v['psnr']:.2f} "
                  f"ssim={v['ssim']:.3f} | {time.perf_counter() - started:.0f} s", flush=True)

    net, result = run_to_end(steps, report)
    print(f"best val_loss {result.best:.5f} at step {result.best_step}; training wall time {result.wall_time_s:.0f} s", flush=True)

    metrics = {
        f"{args.family}_heldout": measure(net, raw_pairs(args.family, args, args.seed + 2000, 2)),
        f"{args.test_family}_unseen": measure(net, raw_pairs(args.test_family, args, args.seed + 3000, 2)),
        "validation_best": {k: round(v, 4) for k, v in result.history[-1].items() if k in ("psnr", "ssim")}
        if result.history else {},
        "note": "PSNR/SSIM vs FBP of noise-free projections, whole volumes, data range of the target",
    }
    best = next((h for h in result.history if h["step"] == result.best_step), None)
    if best:
        metrics["validation_best"] = {"step": best["step"], "psnr": round(best["psnr"], 4), "ssim": round(best["ssim"], 4)}
    path = save_model(
        net,
        args.out,
        training={
            "data": train.description,
            "validation": val.description,
            "steps": result.step,
            "best_step": result.best_step,
            "batch": args.batch,
            "crop": args.crop,
            "optimizer": f"Adam, lr {args.lr} cosine-decayed to 5 %, critic lr {args.lr_critic}",
            "losses": vars(losses),
            "perceptual": "off (no VGG19 weights)" if vgg is None else f"VGG19 {vgg.layer}",
            "seed": args.seed,
            "wall_time_s": round(result.wall_time_s, 1),
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
            "torch": torch.__version__,
            "command": "python scripts/train_tomogan.py " + " ".join(sys.argv[1:] if argv is None else argv),
        },
        metrics=metrics,
        description=(f"TomoGAN (depth {args.depth}) for low-dose FBP reconstructions; trained on simulated "
                     f"{args.family} phantoms at I0={args.i0:g} photons/pixel"),
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print("metrics:", metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
