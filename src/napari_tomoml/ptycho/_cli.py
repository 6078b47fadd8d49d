"""``tomoml ptycho simulate|train|predict|live``: the ptychography commands of the CLI (no Qt).

    tomoml ptycho simulate OUT_DIR [--size 64] [--shape 256 256] [--photons 1e6] [--scan raster|spiral]
    tomoml ptycho train DIFF.npz LABELS.npy MODEL [--size 64] [--steps N] [--phase-only] [--onnx]
    tomoml ptycho predict DIFF.npz OUT.npy --model MODEL [--positions POS.npy --shape Y X]
    tomoml ptycho live --model MODEL (--simulate DIFF.npz | --folder DIR | --pv CHANNEL)
                       --positions POS.npy [--rate 500] [--batch 64] [--out IMAGE.npy]

Data files use the published PtychoNN layout (see :mod:`napari_tomoml.ptycho.io`); positions are
an (N, 2) ``.npy`` of probe centres (y, x) in object pixels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _refuse_existing(path: Path, overwrite: bool) -> None:
    from ..errors import OutputExistsError

    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")


def _save_npy(path: Path, array: np.ndarray, overwrite: bool) -> None:
    _refuse_existing(path, overwrite)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _positions(path: str | None, n: int | None = None) -> np.ndarray | None:
    from .sim import check_positions

    if path is None:
        return None
    return check_positions(np.load(path, allow_pickle=False), n)


def cmd_simulate(args: argparse.Namespace) -> int:
    from . import sim

    out = Path(args.output)
    names = [out / "diffraction.npz", out / "labels.npy", out / "positions.npy", out / "object.npy"]
    for name in names:
        _refuse_existing(name, args.overwrite)
    obj = sim.random_object(tuple(args.shape), seed=args.seed)
    probe = sim.focused_probe(args.size, aperture=args.aperture, defocus=args.defocus, photons=args.photons)
    scan = sim.raster_scan if args.scan == "raster" else sim.spiral_scan
    pos = scan(obj.shape, args.size, sim.probe_diameter(probe), overlap=args.overlap)
    patterns = sim.simulate(obj, probe, pos, photons=args.photons, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)  # only once the settings have proved workable
    np.savez_compressed(names[0], patterns)  # unnamed → arr_0, as published
    np.save(names[1], sim.patches(obj, pos, args.size))
    np.save(names[2], pos)
    np.save(names[3], obj)
    np.save(out / "probe.npy", probe)
    print(f"wrote {len(pos)} {args.size}² patterns ({args.scan} scan) and labels to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..models.store import save_model
    from ..progress import run_to_end
    from .io import load_dataset
    from .nn import export_onnx, train_steps

    out = Path(args.output)
    weights = out if out.suffix == ".safetensors" else out.with_name(out.name + ".safetensors")
    _refuse_existing(weights, args.overwrite)
    ds = load_dataset(args.diffraction, args.labels)
    steps = train_steps(ds.patterns, None if args.phase_only else ds.amplitude, ds.phase, size=args.size,
                        steps=args.steps, batch=args.batch, lr=args.lr, phase_only=args.phase_only, nconv=args.nconv,
                        val_fraction=args.val_fraction, seed=args.seed, device=args.device,
                        checkpoint_dir=args.checkpoint, batchnorm=args.batchnorm, schedule=args.schedule,
                        illuminated_radius=args.illuminated_radius)
    model = run_to_end(steps, progress=not args.quiet)
    card = model.card
    path = save_model(model.module, weights, **{k: card[k] for k in ("description", "normalization", "training", "metrics")})
    scores = ", ".join(f"{k} {v:.4g}" for k, v in card["metrics"].items() if k in ("ssim", "psnr", "val_loss"))
    print(f"wrote {path} ({card['training']['steps']} steps, {card['training']['wall_time_s']:.0f} s; validation: {scores})")
    if args.onnx:
        onnx_path = export_onnx(model, weights.with_suffix(".onnx"), overwrite=args.overwrite)
        print(f"wrote {onnx_path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from .io import load_dataset
    from ..device import resolve_device
    from .nn import _resolve_model, predict, stitch_weights
    from .stitching import stitch

    out = Path(args.output)
    if out.suffix != ".npy":
        raise InputError(f"output {out}: write a .npy file")
    _refuse_existing(out, args.overwrite)
    ds = load_dataset(args.diffraction)
    model = _resolve_model(args.model, resolve_device(args.device))
    t = time.perf_counter()
    amp, phase = predict(ds.patterns, model=model, batch=args.batch, device=args.device)
    took = time.perf_counter() - t
    pos = _positions(args.positions, len(phase))
    if pos is not None:
        scale = ds.patterns.shape[1] / phase.shape[1]  # object pixels per predicted pixel
        extent = args.shape or pos.max(axis=0) + ds.patterns.shape[1]
        result = stitch(phase, pos / scale, tuple(int(np.ceil(v / scale)) for v in extent),
                        weights=stitch_weights(model, phase.shape[1]))
    else:
        result = phase
    _save_npy(out, result, args.overwrite)
    print(f"wrote {out} ({' x '.join(map(str, result.shape))} phase; {len(phase)} patterns in {took:.2f} s, "
          f"{len(phase) / max(took, 1e-9):.0f} patterns/s)")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from .live import FolderSource, LiveEngine, PvaSource, SimulatedDetector

    chosen = [x for x in (args.simulate, args.folder, args.pv) if x]
    if len(chosen) != 1:
        raise InputError("choose one frame source: --simulate DIFF.npz, --folder DIR or --pv CHANNEL")
    if args.out:
        _refuse_existing(Path(args.out), args.overwrite)
    if args.simulate:
        from .io import load_dataset

        ds = load_dataset(args.simulate)
        pos = _positions(args.positions, len(ds))
        if pos is None:
            raise InputError("--simulate needs --positions POS.npy (one (y, x) per pattern)")
        source: Any = SimulatedDetector(ds.patterns, pos, rate=args.rate or None, repeat=args.repeat)
    elif args.folder:
        source = FolderSource(args.folder)
    else:
        source = PvaSource(args.pv, frames=args.frames)
    engine = LiveEngine(source, args.model, batch=args.batch, device=args.device,
                        max_buffer=args.max_buffer)
    steps = engine.steps(images=False, update_every=0.5, duration=args.duration)
    result = None
    try:
        while True:
            try:
                p = next(steps)
            except StopIteration as stop:
                result = stop.value
                break
            if not args.quiet:
                c = p.data["counters"]
                print(f"\rreceived {c['received']}  inferred {c['inferred']}  buffered {c['buffered']}  "
                      f"dropped {c['dropped']}  lost {c['lost']}  {c['rate']:.0f} frames/s   ", end="", file=sys.stderr)
    except KeyboardInterrupt:
        steps.close()
    if not args.quiet:
        print(file=sys.stderr)
    c = result.counters if result is not None else engine.counters()
    print(f"inferred {c['inferred']} of {c['received']} frames (dropped {c['dropped']}, lost {c['lost']}); "
          f"sustained {c.get('sustained_rate', c['rate']):.0f} frames/s")
    if args.out and engine.phase is not None:
        _save_npy(Path(args.out), engine.phase.image(), args.overwrite)
        print(f"wrote {args.out}")
    return 0


def add_ptycho_parser(sub: Any) -> None:
    """Add ``tomoml ptycho ...`` to the CLI's subcommands."""
    p = sub.add_parser("ptycho", help="ptychography: simulate, train/predict PtychoNN, live phase retrieval")
    ps = p.add_subparsers(dest="ptycho_command", metavar="COMMAND")

    s = ps.add_parser("simulate", help="simulate a scan in the published PtychoNN layout (+ positions, object)")
    s.add_argument("output", help="folder to write diffraction.npz, labels.npy, positions.npy, object.npy")
    s.add_argument("--size", type=int, default=64, help="probe window / frame size")
    s.add_argument("--shape", type=int, nargs=2, default=[256, 256], metavar=("Y", "X"))
    s.add_argument("--scan", choices=["raster", "spiral"], default="raster")
    s.add_argument("--overlap", type=float, default=0.6)
    s.add_argument("--photons", type=float, default=1e6)
    s.add_argument("--aperture", type=float, default=0.2)
    s.add_argument("--defocus", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_simulate)

    t = ps.add_parser("train", help="train PtychoNN on diffraction patterns + complex object labels")
    t.add_argument("diffraction", help=".npz with arr_0 (lines, points, H, W) or (N, H, W)")
    t.add_argument("labels", help=".npy complex object patches, same leading shape")
    t.add_argument("output", help="model to write (OUTPUT.safetensors + OUTPUT.json)")
    t.add_argument("--size", type=int, default=64)
    t.add_argument("--steps", type=int, default=None, help="default: 30 epochs")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--nconv", type=int, default=32, help="encoder channels of the first block (published: 32)")
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--phase-only", action="store_true", help="the phase-only variant")
    t.add_argument("--batchnorm", action="store_true", help="batch norm after each convolution (trains faster)")
    t.add_argument("--schedule", choices=["cyclic", "cosine"], default="cyclic", help="learning rate (published: cyclic)")
    t.add_argument("--illuminated-radius", type=float, default=None,
                   help="pixels: count the loss only where the probe lights the object (e.g. 0.6 x its diameter)")
    t.add_argument("--checkpoint", help="checkpoint folder (resumes if present)")
    t.add_argument("--onnx", action="store_true", help="also write OUTPUT.onnx")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    r = ps.add_parser("predict", help="phase of each pattern (or the stitched image with --positions)")
    r.add_argument("diffraction")
    r.add_argument("output", help=".npy to write")
    r.add_argument("--model", required=True, help="PtychoNN model file (.safetensors) or .onnx")
    r.add_argument("--positions", help=".npy (N, 2) probe centres: stitch into one image")
    r.add_argument("--shape", type=int, nargs=2, metavar=("Y", "X"), help="stitched image shape (object pixels)")
    r.add_argument("--batch", type=int, default=256)
    r.add_argument("--device", default="auto")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=cmd_predict)

    v = ps.add_parser("live", help="live phase retrieval from a frame source, with counters")
    v.add_argument("--model", required=True)
    v.add_argument("--simulate", metavar="DIFF.npz", help="replay these patterns as a detector")
    v.add_argument("--folder", help="read .npz frame files as they appear (ends at scan.done)")
    v.add_argument("--pv", metavar="CHANNEL", help="EPICS pvAccess NTNDArray channel (p4p)")
    v.add_argument("--positions", help="(N, 2) .npy for --simulate")
    v.add_argument("--rate", type=float, default=0, help="simulated frames/s (0: as fast as possible)")
    v.add_argument("--repeat", type=int, default=1, help="replay the simulated scan this many times")
    v.add_argument("--frames", type=int, default=None, help="pvAccess: stop after this many frames")
    v.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    v.add_argument("--batch", type=int, default=64)
    v.add_argument("--max-buffer", type=int, default=None, help="drop the oldest frames beyond this many waiting")
    v.add_argument("--out", help="write the stitched phase to this .npy")
    v.add_argument("--device", default="auto")
    v.add_argument("--overwrite", action="store_true")
    v.add_argument("-q", "--quiet", action="store_true")
    v.set_defaults(func=cmd_live)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])
