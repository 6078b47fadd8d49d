"""PtychoNN vs ePIE on a held-out region, training time, per-position speed, sustained live rates.

    python benchmarks/bench_ptycho.py                 # quality + speed + live rates (CPU, ~15 min)
    python benchmarks/bench_ptycho.py --skip-quality  # live rates only

Quality: one simulated object (randomly etched features, as the seed's training sample) scanned by
a focused probe; the training scan covers the left part, the held-out scan a right part no
training window touches. Training labels are ePIE reconstructions of the training scan (the
seed's workflow: iterative phase → labels), offset-aligned to the truth's background. Scores:
phase SSIM / PSNR / MAE against the truth inside the held-out scan's well-illuminated area, for
PtychoNN (predict + stitch) and for ePIE run on the held-out scan itself.

Live: a simulated detector replays frames as fast as it can (and at a set rate) into the
LiveEngine (buffer → batched network → stitched image); its sustained rate is printed beside the
bare network's batched forward pass measured in the same run (torch fp32, and ONNX Runtime).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

import napari_tomoml as tm
from napari_tomoml.models.ptychonn import PtychoNN, flops_per_frame
from napari_tomoml.models.store import LoadedModel
from napari_tomoml.progress import run_to_end
from napari_tomoml.ptycho import sim
from napari_tomoml.ptycho.live import LiveEngine, SimulatedDetector
from napari_tomoml.ptycho.nn import inference_copy, run_network


def _report(p) -> None:
    if "validation" in p.data:
        v = p.data["validation"]
        print(f"  step {p.done}/{p.total}: val phase+amp MSE {v['val_loss']:.4f}, phase SSIM {v['ssim']:.3f}", flush=True)


def quality(args: argparse.Namespace) -> dict:
    n = args.window
    obj = sim.random_object((args.height, args.width), seed=args.seed)
    probe = sim.focused_probe(n, aperture=args.aperture * 32 / n, defocus=args.defocus, photons=args.photons)
    d = sim.probe_diameter(probe)
    split = int(args.width * 0.7)
    train_obj_region = obj[:, :split]
    pos_train = sim.raster_scan(train_obj_region.shape, n, d, overlap=args.overlap)
    test_x0 = split + n // 2  # no training window reaches the held-out windows
    pos_test = sim.spiral_scan((args.height, args.width - test_x0), n, d, overlap=0.6) + [0, test_x0]
    pat_train = sim.simulate(obj, probe, pos_train, photons=args.photons, seed=1)
    pat_test = sim.simulate(obj, probe, pos_test, photons=args.photons, seed=2)
    print(f"object {obj.shape}, probe {n}² (90% diameter {d:.1f} px), {len(pos_train)} training / "
          f"{len(pos_test)} held-out positions, {args.photons:g} photons/position", flush=True)

    t = time.perf_counter()
    rec_train, _ = tm.ptycho.epie(pat_train, pos_train, probe, iterations=args.epie_iterations, device="cpu")
    t_label = time.perf_counter() - t
    covered = tm.ptycho.Stitcher(obj.shape, None)
    covered.add(np.ones((len(pos_train), n, n)), pos_train)
    mask = covered.coverage()[: rec_train.shape[0], : rec_train.shape[1]] > 0
    labels_phase = tm.ptycho.align_phase(np.angle(rec_train), np.angle(obj[: rec_train.shape[0], : rec_train.shape[1]]), mask)
    lab_ph = sim.patches(labels_phase, pos_train, n)
    lab_amp = sim.patches(np.abs(rec_train), pos_train, n)

    t = time.perf_counter()
    model = tm.ptycho.train(pat_train, np.clip(lab_amp, 0, 1), lab_ph, size=n, steps=args.steps, device="cpu",
                            nconv=args.nconv, batch=args.batch, val_every=max(50, args.steps // 10), progress=_report)
    t_train = time.perf_counter() - t

    tm.ptycho.predict(pat_test[:8], model=model, device="cpu")  # warm-up: one-off allocations are not per position
    t = time.perf_counter()
    _, ph = tm.ptycho.predict(pat_test, model=model, device="cpu", batch=256)
    t_nn = time.perf_counter() - t
    t = time.perf_counter()
    rec_test, _ = tm.ptycho.epie(pat_test, pos_test, probe, iterations=args.epie_iterations, device="cpu",
                                 shape=obj.shape)
    t_epie = time.perf_counter() - t
    stitched = tm.ptycho.stitch(ph, pos_test, obj.shape)

    lo = pos_test.min(axis=0) + d / 2
    hi = pos_test.max(axis=0) - d / 2
    region = (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])))
    truth = np.angle(obj)
    scores = {"ptychonn": tm.ptycho.phase_scores(stitched, truth, region),
              "epie": tm.ptycho.phase_scores(np.angle(rec_test), truth, region)}
    per_nn, per_epie = t_nn / len(pos_test), t_epie / len(pos_test)
    out = {
        "window": n, "nconv": args.nconv, "train_positions": len(pos_train), "test_positions": len(pos_test),
        "region": [int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1])],
        "epie_label_time_s": t_label, "train_time_s": t_train, "train_steps": args.steps,
        "validation": model.card["metrics"], "scores": scores,
        "ptychonn_ms_per_position": 1e3 * per_nn, "epie_ms_per_position": 1e3 * per_epie,
        "speed_ratio": per_epie / per_nn, "epie_iterations": args.epie_iterations,
    }
    print(json.dumps(out, indent=1), flush=True)
    if args.save:
        np.savez_compressed(args.save, truth=truth, ptychonn=stitched, epie=np.angle(rec_test), region=out["region"])
    return out


def speed(args: argparse.Namespace) -> dict:
    """Per-position time of PtychoNN (warm, batched) and ePIE on the held-out scan alone (no training: the
    network's cost does not depend on its weights)."""
    n = args.window
    obj = sim.random_object((args.height, args.width), seed=args.seed)
    probe = sim.focused_probe(n, aperture=args.aperture * 32 / n, defocus=args.defocus, photons=args.photons)
    d = sim.probe_diameter(probe)
    test_x0 = int(args.width * 0.7) + n // 2
    pos = sim.spiral_scan((args.height, args.width - test_x0), n, d, overlap=0.6) + [0, test_x0]
    pat = sim.simulate(obj, probe, pos, photons=args.photons, seed=2)
    torch.manual_seed(0)
    net = PtychoNN(nconv=args.nconv).eval()
    tm.ptycho.predict(pat[:8], model=net, device="cpu")
    times = {}
    for name, run in {
        "ptychonn": lambda: tm.ptycho.predict(pat, model=net, device="cpu", size=n),
        "epie_batched": lambda: tm.ptycho.epie(pat, pos, probe, iterations=args.epie_iterations, device="cpu"),
        "epie_sequential": lambda: tm.ptycho.epie(pat, pos, probe, iterations=args.epie_iterations, batch=1,
                                                  device="cpu"),
    }.items():
        t = time.perf_counter()
        run()
        times[name] = 1e3 * (time.perf_counter() - t) / len(pos)
    out = {f"{k}_ms_per_position": v for k, v in times.items()}
    out.update({"positions": len(pos), "epie_iterations": args.epie_iterations,
                "ratio_vs_batched_epie": times["epie_batched"] / times["ptychonn"],
                "ratio_vs_sequential_epie": times["epie_sequential"] / times["ptychonn"],
                "ptychonn_gflop_per_position": flops_per_frame(net, n) / 1e9})
    print(json.dumps(out, indent=1), flush=True)
    return out


def bare_rate(forward, size: int, batch: int, seconds: float) -> float:
    x = np.random.default_rng(0).poisson(20, (batch, 1, size, size)).astype(np.float32)
    forward(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        forward(x)
        n += batch
    return n / (time.perf_counter() - t0)


def live(args: argparse.Namespace) -> dict:
    results = {}
    for size in (64, 128):
        torch.manual_seed(0)
        net = PtychoNN().eval()
        net.input_scale.fill_(0.1)
        obj = sim.random_object((size * 3, size * 3), seed=0)
        probe = sim.focused_probe(size, photons=1e5)
        pos = sim.raster_scan(obj.shape, size, sim.probe_diameter(probe), overlap=0.5)
        frames = sim.simulate(obj, probe, pos, photons=1e5)
        reps = max(1, int(np.ceil(args.live_frames[size] / len(frames))))

        fast = inference_copy(LoadedModel(net))  # the channels-last copy the pipeline runs

        def torch_forward(x: np.ndarray) -> None:
            run_network(fast, x, torch.device("cpu"))

        row = {"gflop_per_frame": flops_per_frame(net, size) / 1e9,
               "bare_torch_fps": bare_rate(torch_forward, size, args.live_batch, args.bare_seconds)}
        engine = LiveEngine(SimulatedDetector(frames, pos, rate=None, repeat=reps), net, batch=args.live_batch,
                            device="cpu")
        res = run_to_end(engine.steps(images=False, update_every=0.5))
        row["pipeline_torch_fps"] = res.counters["sustained_rate"]
        row["pipeline_counters"] = {k: res.counters[k] for k in ("received", "inferred", "dropped", "lost", "max_buffered")}
        try:
            with tempfile.TemporaryDirectory() as tmp:
                onnx_path = tm.ptycho.export_onnx(net, os.path.join(tmp, "p.onnx"), size=size)
                run = tm.ptycho.OnnxPredictor(onnx_path, threads=torch.get_num_threads())
                row["bare_onnxruntime_fps"] = bare_rate(run, size, args.live_batch, args.bare_seconds)
                engine = LiveEngine(SimulatedDetector(frames, pos, rate=None, repeat=reps), run,
                                    batch=args.live_batch, device="cpu")
                res = run_to_end(engine.steps(images=False, update_every=0.5))
                row["pipeline_onnxruntime_fps"] = res.counters["sustained_rate"]
        except ImportError:
            pass
        best_bare = max(v for k, v in row.items() if k.startswith("bare_"))
        best_pipe = max(v for k, v in row.items() if k.startswith("pipeline_") and k.endswith("fps"))
        row["bare_over_pipeline"] = best_bare / best_pipe
        results[size] = row
        print(f"{size}²: {json.dumps(row)}", flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=160)
    p.add_argument("--overlap", type=float, default=0.7)
    p.add_argument("--aperture", type=float, default=0.2, help="lens aperture for a 32² window (scaled for others)")
    p.add_argument("--defocus", type=float, default=0.5)
    p.add_argument("--photons", type=float, default=1e6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nconv", type=int, default=16)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epie-iterations", type=int, default=50)
    p.add_argument("--live-batch", type=int, default=64)
    p.add_argument("--frames-64", type=int, default=1000, help="frames through the live pipeline at 64²")
    p.add_argument("--frames-128", type=int, default=300, help="frames through the live pipeline at 128²")
    p.add_argument("--bare-seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-live", action="store_true")
    p.add_argument("--speed-only", action="store_true", help="per-position PtychoNN vs ePIE times only")
    p.add_argument("--save", help="write truth / PtychoNN / ePIE phase images to this .npz")
    args = p.parse_args()
    args.live_frames = {64: args.frames_64, 128: args.frames_128}
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU {torch.backends.cpu.get_cpu_capability()}")
    if args.speed_only:
        speed(args)
        return
    if not args.skip_quality:
        quality(args)
    if not args.skip_live:
        live(args)


if __name__ == "__main__":
    main()
