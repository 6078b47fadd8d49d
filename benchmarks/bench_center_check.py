"""Centre check on the real tooth scan: how long Cancel can wait (the longest gap between two
progress steps, where a worker stops) and the total time, for the adaptive batch the widget uses
against the old fixed batch of 8 slices (the peer), in the same run. Run by hand, never in CI:

    .venv/bin/python benchmarks/bench_center_check.py [--scan ../shared/data/real/tooth.h5] [--device cpu]

Asks for ±50 px at 0.1 px (1001 slices), which the plan caps at 101 slices.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def gaps(steps) -> list[float]:
    """Seconds between successive yields of a ``*_steps`` generator (the first: until the first yield)."""
    out, t = [], time.perf_counter()
    try:
        while True:
            next(steps)
            now = time.perf_counter()
            out.append(now - t)
            t = now
    except StopIteration:
        return out


def main() -> None:
    import napari_tomoml as tm
    from napari_tomoml.tasks import reconstruct as task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared"
                        / "data" / "real" / "tooth.h5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scan = tm.load_scan(args.scan)
    proj = tm.normalize(scan)
    n_det = proj.shape[-1]
    centres, warnings = task.plan_center_check(295.6, 50, 0.1, n_det)
    print(f"{args.scan.name}: {proj.shape}, asked ±50 px at 0.1 px -> {len(centres)} slices, "
          f"{task.center_check_bytes(len(centres), n_det) / 2**20:.0f} MB; {warnings[0]}")
    rows = {}
    for label, pixels in (("adaptive (widget)", task.CENTER_CHECK_BATCH_PIXELS), ("fixed batch of 8 (peer)", 1 << 40)):
        task.CENTER_CHECK_BATCH_PIXELS = pixels
        g = gaps(task.center_check_steps(proj, 1, scan.theta, centres, "ramp", {}, False))
        rows[label] = g
        print(f"{label:24s} longest wait for Cancel {max(g):5.2f} s, median {np.median(g):4.2f} s, "
              f"total {sum(g):5.1f} s, {len(g)} progress steps")
    a, b = (max(v) for v in rows.values())
    print(f"cancel latency ratio adaptive/fixed: {a / b:.2f}")


if __name__ == "__main__":
    main()
