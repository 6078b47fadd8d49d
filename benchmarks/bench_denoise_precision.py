"""tm.denoise per 1024² slice at each precision, beside the bare network, with GFLOP/s and the CPU's peak.

    python benchmarks/bench_denoise_precision.py [--size 1024] [--slices 3] [--skip-bf16]

Also a section of ``bench_all.py`` (``make bench``). Measured in one run, with the threads torch
has (``OMP_NUM_THREADS``; ONNX Runtime is given the same number):

- the bare TomoGAN forward pass on one whole ``(1, 3, size, size)`` window: torch fp32
  channels-last (the reference), torch bf16 autocast, ONNX Runtime fp32 and the int8 model that
  ``precision="int8"`` builds;
- ``tm.denoise`` on a ``(slices, size, size)`` volume at each precision (default tiles), seconds
  per slice, with the PSNR of its output against the fp32 ``tm.denoise`` output; int8's one-off
  quantisation (export, calibration, PSNR check) is timed apart, as the first call, and the
  per-slice time is a second call that reuses the quantised model.

GFLOP/s is the network's fp32 FLOP count (``torch.utils.flop_counter``, multiply-add = 2) over
the time, for every path alike. The CPU's peak is cores x FMA units x SIMD lanes x 2 x clock, from
``/proc/cpuinfo``: fp32 lanes 16 with AVX-512, 8 with AVX2; 2 FMA units (AMD Zen, Intel server
cores). int8's nominal peak counts 4 multiply-adds per 32-bit lane per instruction (VNNI's
``vpdpbusd``, or AVX2's ``vpmaddubsw`` + ``vpmaddwd`` pair at half that rate without VNNI).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

SIZE, SLICES = 1024, 3


def _cpuinfo() -> tuple[str, float, frozenset[str]]:
    model, mhz, flags = "unknown CPU", 0.0, frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key == "cpu MHz" and not mhz:
                mhz = float(value)
            elif key == "flags" and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    return model, mhz, flags


def peaks(cores: int, mhz: float, flags: frozenset[str]) -> dict[str, float]:
    """Nominal peaks in GFLOP/s (fp32) and GOP/s (int8 multiply-adds x 2) of ``cores`` cores."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = cores * 2 * lanes * 2 * mhz / 1e3
    int8_rate = 4 if ("avx512_vnni" in flags or "avx_vnni" in flags) else 2  # per 32-bit lane
    return {"fp32": fp32, "int8": fp32 * int8_rate, "lanes": lanes}


def flops(net, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, net.depth, size, size))
    return float(counter.get_total_flops())


def _timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def bench_precision(size: int = SIZE, slices: int = SLICES, bf16: bool = True) -> list[str]:
    from napari_tomoml.inference.precision import psnr
    from napari_tomoml.inference.runner import calibration_tiles, onnx_int8_predictor
    from napari_tomoml.models.store import load_model
    from napari_tomoml.progress import run_to_end
    from napari_tomoml.sim.phantom import random_ellipsoids
    from napari_tomoml.tasks.denoise import denoise_steps

    threads = torch.get_num_threads()
    model_name, mhz, flags = _cpuinfo()
    peak = peaks(threads, mhz, flags)
    net = load_model("tomogan-lowdose").module.eval()
    gflop = flops(net, size) / 1e9
    rng = np.random.default_rng(0)
    volume = random_ellipsoids(size, slices, seed=5)
    volume = (volume + rng.normal(0, 0.1, volume.shape)).astype(np.float32)
    window = volume[None, :3] if slices >= 3 else np.repeat(volume[None, :1], 3, axis=1)
    lines = [
        (
            f"TomoGAN (bundled tomogan-lowdose) on {size}² slices: {gflop:.1f} GFLOP per slice (fp32 count, "
            f"multiply-add = 2). {threads} thread(s) of {model_name} at {mhz:.0f} MHz, SIMD {peak['lanes']} "
            f"fp32 lanes: peak {peak['fp32']:.0f} GFLOP/s fp32, nominal {peak['int8']:.0f} GOP/s int8 "
            f"({'VNNI' if peak['int8'] > 2 * peak['fp32'] else 'no VNNI: AVX2 pairs'}). "
            f"Load average at start {os.getloadavg()[0]:.1f}."
        ),
        "",
        "| path | s per slice | GFLOP/s | % of fp32 peak | PSNR vs fp32 (dB) |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(name, seconds, quality=""):
        rate = gflop / seconds
        text = f"| {name} | {seconds:.2f} | {rate:.0f} | {100 * rate / peak['fp32']:.0f} % | {quality} |"
        print(" ", text, flush=True)
        lines.append(text)

    x = torch.from_numpy(window)
    with torch.inference_mode():
        cl_net, cl_x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
        reference = cl_net(cl_x).numpy()
        bare = _timed(lambda: cl_net(cl_x))
        row("bare network, torch fp32 channels-last, whole slice", bare)
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = cl_net(cl_x).float().numpy()
                row("bare network, torch bf16 autocast (once)", _once(lambda: cl_net(cl_x)), f"{psnr(out, reference):.1f}")
    row("bare network, ONNX Runtime fp32", *_onnx_fp32(net, window, reference))
    start = time.perf_counter()
    # calibrated as tm.denoise does: on every other one of 4 tiles along the diagonal
    int8 = onnx_int8_predictor(net, calibration_tiles([window[0]], per_image=4, multiple=net.size_multiple)[0::2])
    quantise = time.perf_counter() - start
    out = int8(window)
    row("bare network, ONNX Runtime int8 (static QDQ)", _timed(lambda: int8(window)), f"{psnr(out, reference):.1f}")

    def denoise_time(precision):
        t = time.perf_counter()
        out, meta = run_to_end(denoise_steps(volume, device="cpu", precision=precision))
        return (time.perf_counter() - t) / slices, out, meta

    per_slice, fp32_out, fp32_meta = denoise_time("fp32")
    row(f"tm.denoise fp32 (default tiles: {fp32_meta['parameters']['tile']} px, {slices} slices)", per_slice)
    lines_ratio = f"tm.denoise fp32 / bare forward pass: {per_slice / bare:.2f}× (target ≤ 1.1×)."
    first, _, _ = denoise_time("int8")
    int8_slice, out, meta = denoise_time("int8")
    row("tm.denoise int8", int8_slice, f"{psnr(out, fp32_out):.1f} (calibration tiles: {meta['precision']['psnr_db']})")
    per_slice, out, meta = denoise_time("auto")
    row(f"tm.denoise auto (used {meta['precision']['used']})", per_slice, f"{psnr(out, fp32_out):.1f}")
    if bf16:  # one slice: emulated bf16 is slow without native support
        one_fp32 = run_to_end(denoise_steps(volume[:1], device="cpu"))[0]
        t = time.perf_counter()
        out = run_to_end(denoise_steps(volume[:1], device="cpu", precision="bf16"))[0]
        row("tm.denoise bf16 (a 1-slice volume)", time.perf_counter() - t, f"{psnr(out, one_fp32):.1f}")
    lines += [
        "",
        lines_ratio,
        (
            f"int8's one-off cost (export, quantisation, calibration on 4 tiles of 256², PSNR check on 4 more): "
            f"{(first - int8_slice) * slices:.1f} s beyond a cached call (first call {first * slices:.1f} s "
            f"for {slices} slices; the bare int8 model took {quantise:.1f} s to build)."
        ),
        (
            f"At the fp32 peak a slice would take {gflop / peak['fp32']:.2f} s and at the nominal int8 peak "
            f"{gflop / peak['int8']:.2f} s: 0.5 s per slice needs {gflop / 0.5:.0f} GFLOP/s."
        ),
    ]
    return lines


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _onnx_fp32(net, window, reference):
    import io

    import onnxruntime as ort

    from napari_tomoml.inference.precision import psnr

    buffer = io.BytesIO()
    plain = net.to(memory_format=torch.contiguous_format)
    torch.onnx.export(plain, (torch.from_numpy(window),), buffer, input_names=["x"], output_names=["y"],
                      dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": window})[0]
    return _timed(lambda: session.run(None, {"x": window})), f"{psnr(out, reference):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--slices", type=int, default=SLICES)
    parser.add_argument("--skip-bf16", action="store_true", help="bf16 is emulated (slow) without AVX-512 BF16")
    args = parser.parse_args()
    print("\n".join(bench_precision(args.size, args.slices, not args.skip_bf16)))


if __name__ == "__main__":
    sys.exit(main())
