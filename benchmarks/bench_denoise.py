"""Benchmark TomoGAN denoising: quality against classical denoisers, and speed. Run by hand.

    python benchmarks/bench_denoise.py                  # quality + speed
    python benchmarks/bench_denoise.py --skip-speed     # quality tables only

Quality: the bundled model was trained on random-ellipsoid phantoms; it is tested here on
porous-rock/foam phantoms it never saw (and, for reference, on held-out ellipsoids), all at the
same low dose. Classical denoisers get their best parameter from a sweep on the test set itself,
which favours them. Scores are PSNR/SSIM against the normal-dose FBP, over whole volumes.

Speed: seconds per 1024 x 1024 slice (depth 3) on this machine: eager, channels_last, tiled
(tm.denoise defaults), torch.compile and ONNX Runtime where they work.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
from scipy.ndimage import gaussian_filter

from napari_tomoml.models.normalization import fit_normalization
from napari_tomoml.models.store import load_model
from napari_tomoml.tasks.denoise import denoise
from napari_tomoml.training.data import phantom_slab, simulate_pair
from napari_tomoml.training.metrics import psnr, ssim


def test_set(family: str, n: int, size: int, nz: int, i0: float, seed: int):
    return [simulate_pair(phantom_slab(family, size, nz, seed=seed + k), i0=i0, seed=seed + 10_000 + k, device="cpu")
            for k in range(n)]


def _per_slice(fn, vol):
    return np.stack([fn(s) for s in vol])


def classical(volume: np.ndarray, method: str, param: float) -> np.ndarray:
    """A classical denoiser on data mapped to [0, 1] by its 0.5/99.5 percentiles (so parameters transfer)."""
    affine = fit_normalization({"kind": "percentile", "percentiles": [0.5, 99.5], "range": [0, 1]}, volume)
    x = affine.apply(volume).astype(np.float64)
    if method == "gaussian":
        y = _per_slice(lambda s: gaussian_filter(s, param), x)
    elif method == "gaussian_3d":
        y = gaussian_filter(x, param)
    elif method == "tv_chambolle":
        y = _per_slice(lambda s: denoise_tv_chambolle(s, weight=param), x)
    elif method == "tv_chambolle_3d":
        y = denoise_tv_chambolle(x, weight=param)
    elif method == "nl_means":
        y = _per_slice(lambda s: denoise_nl_means(s, h=param, patch_size=5, patch_distance=6, fast_mode=True), x)
    else:
        raise ValueError(method)
    return affine.undo(y).astype(np.float32)


SWEEPS = {
    "gaussian": [0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
    "gaussian_3d": [0.5, 0.75, 1.0, 1.5, 2.0],
    "tv_chambolle": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
    "tv_chambolle_3d": [0.02, 0.05, 0.1, 0.15, 0.2],
    "nl_means": [0.03, 0.05, 0.08, 0.12, 0.18, 0.25],
}


def score(pairs, outputs):
    return (float(np.mean([psnr(o, c) for o, (_, c) in zip(outputs, pairs)])),
            float(np.mean([ssim(o, c) for o, (_, c) in zip(outputs, pairs)])))


def quality(model: str, pairs, title: str) -> None:
    rows = [("FBP input (low dose)", "", *score(pairs, [n for n, _ in pairs]))]
    for method, params in SWEEPS.items():
        best = max(((p, *score(pairs, [classical(n, method, p) for n, _ in pairs])) for p in params), key=lambda r: r[1])
        rows.append((method, f"{best[0]:g}", best[1], best[2]))
    t = time.perf_counter()
    out = [denoise(n, model, device="cpu") for n, _ in pairs]
    elapsed = time.perf_counter() - t
    rows.append((f"TomoGAN ({model})", "", *score(pairs, out)))
    best_classical = max(r[2] for r in rows[1:-1])
    print(f"\n{title}")
    print(f"{'method':<28} {'best param':>10} {'PSNR dB':>9} {'SSIM':>7}")
    for name, param, p, s in rows:
        print(f"{name:<28} {param:>10} {p:9.2f} {s:7.3f}")
    print(f"TomoGAN - best classical: {rows[-1][2] - best_classical:+.2f} dB   (TomoGAN took {elapsed:.1f} s)")


def speed(model: str, repeats: int) -> None:
    net = load_model(model).module.eval()
    x = torch.rand(1, net.depth, 1024, 1024)
    volume = np.random.default_rng(0).random((1, 1024, 1024), dtype=np.float32)
    results = []

    def timed(name, fn):
        try:
            fn()  # warm-up (and compilation)
            t = time.perf_counter()
            for _ in range(repeats):
                fn()
            results.append((name, (time.perf_counter() - t) / repeats))
        except Exception as exc:  # a backend that does not work here is reported, not fatal
            results.append((name, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"))

    with torch.inference_mode():
        timed("eager (NCHW), whole slice", lambda: net(x))
        cl_net, cl_x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
        timed("channels_last, whole slice", lambda: cl_net(cl_x))
    timed("tm.denoise (tiles 512/32, channels_last)", lambda: denoise(volume, model, device="cpu"))
    timed("tm.denoise (tile 1024, channels_last)", lambda: denoise(volume, model, device="cpu", tile=1024))
    net = net.to(memory_format=torch.contiguous_format)
    compiled = torch.compile(net)
    with torch.inference_mode():
        timed("torch.compile (inductor), whole slice", lambda: compiled(cl_x))
    timed("ONNX Runtime, whole slice", _onnx_runner(net, x))
    print(f"\nspeed: one 1024 x 1024 slice, depth {net.depth}, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, value in results:
        print(f"{name:<44} {value:.2f} s" if isinstance(value, float) else f"{name:<44} {value}")


def _onnx_runner(net, x):
    import io

    import onnxruntime as ort

    buffer = io.BytesIO()
    torch.onnx.export(net, (x,), buffer, input_names=["x"], output_names=["y"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: session.run(None, feed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tomogan-lowdose")
    p.add_argument("--i0", type=float, default=1e3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--nz", type=int, default=16)
    p.add_argument("--volumes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    card = load_model(args.model).card
    print(f"model {args.model}: {card.get('description', '')}")
    if not args.skip_quality:
        for family, seed, what in [("foam", 5000, "unseen family"), ("ellipsoids", 6000, "training family, held out")]:
            pairs = test_set(family, args.volumes, args.size, args.nz, args.i0, seed)
            quality(args.model, pairs, f"{family} ({what}): {args.volumes} volumes {args.nz}x{args.size}x{args.size}, "
                                      f"I0={args.i0:g} photons/pixel")
    if not args.skip_speed:
        speed(args.model, args.repeats)


if __name__ == "__main__":
    main()
