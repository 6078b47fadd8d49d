"""U-Net segmentation: seamless tiles, Dice after a few minutes of training, throughput and memory.

    python benchmarks/bench_segment.py seams                 # tiled vs whole, 1024^2, tiles cut objects
    python benchmarks/bench_segment.py train --labels dense  # train on one 1024^2 image, test on another
    python benchmarks/bench_segment.py train --labels sparse # the same from strokes on <= 5 % of pixels
    python benchmarks/bench_segment.py speed                 # MP/s and peak RSS, 2048^2 and 64x1024^2
    python benchmarks/bench_segment.py all

Training runs single-threaded (``torch.set_num_threads(1)``) and reports CPU seconds (what the
process itself used, which a loaded machine does not inflate) next to wall seconds. The peer for
Dice is the best hand-tuned classical pipeline: Gaussian smoothing and two global thresholds,
with the sigma and both thresholds chosen on the *test truth* (an upper bound for thresholding).
Peak memory runs each configuration in a fresh process and reads its maximum RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import napari_tomoml as tm  # noqa: E402
from napari_tomoml.sim.segmentation import annotation_strokes, class_names, segmentation_image  # noqa: E402
from napari_tomoml.training.segmentation import dice_scores  # noqa: E402

MODEL = "unet-synthetic"


def seams() -> None:
    image, _ = segmentation_image((1024, 1024), "mixed", seed=11)
    whole = tm.segment(image, MODEL, device="cpu", probabilities=True, tile=1024)
    for tile in (None, 256, 384):
        tiled = tm.segment(image, MODEL, device="cpu", probabilities=True, tile=tile)
        rel = float(np.abs(tiled - whole).max() / np.ptp(whole))
        labels_differ = int((tiled.argmax(0) != whole.argmax(0)).sum())
        print(f"tile {tile or 'auto'}: max|tiled - whole| / range = {rel:.2e}; labels differing: {labels_differ}")


def _threshold_peer(image: np.ndarray, mask: np.ndarray) -> list[float]:
    from scipy import ndimage

    best = None
    for sigma in (1.0, 1.5, 2.0):
        smooth = ndimage.gaussian_filter(image, sigma)
        for lo in np.arange(0.25, 0.41, 0.02):
            for hi in np.arange(0.6, 0.81, 0.02):
                pred = np.where(smooth < lo, 1, np.where(smooth > hi, 2, 0))
                d = dice_scores(pred, mask.astype(np.int64), 3)
                if best is None or np.mean(d) > np.mean(best):
                    best = d
    return best


def train(labels_kind: str, steps: int | None) -> None:
    torch.set_num_threads(1)
    names = class_names("mixed")
    image, mask = segmentation_image((1024, 1024), "mixed", seed=0)
    test, test_mask = segmentation_image((1024, 1024), "mixed", seed=1)
    sparse = labels_kind == "sparse"
    labels = annotation_strokes(mask, 0.05, seed=0) if sparse else mask
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = tm.train_unet(image, labels, sparse=sparse, steps=steps, device="cpu", class_names=names)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    pred = tm.segment(test, model, device="cpu").astype(np.int64) - (1 if sparse else 0)
    dice = dice_scores(pred, test_mask.astype(np.int64), 3)
    peer = _threshold_peer(test, test_mask)
    annotated = float((labels > 0).mean()) if sparse else 1.0
    print(json.dumps({
        "labels": labels_kind, "annotated_fraction": round(annotated, 4), "steps": model.card["training"]["steps"],
        "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
        "test_dice": {n: round(d, 4) for n, d in zip(names, dice)},
        "peer_tuned_threshold_dice": {n: round(d, 4) for n, d in zip(names, peer)},
    }))


def _one_speed(shape: tuple[int, ...], tile: int | None) -> None:
    """Child process: segment once, print MP/s and this process's peak RSS."""
    torch.set_num_threads(1)
    image, _ = segmentation_image(shape, "mixed", seed=2)
    tm.segment(image[..., :64, :64], MODEL, device="cpu")  # load the model, warm up
    start = time.perf_counter()
    tm.segment(image, MODEL, device="cpu", tile=tile)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"shape": list(shape), "tile": tile or "auto", "seconds": round(seconds, 2),
                      "mp_per_s": round(image.size / 1e6 / seconds, 3), "peak_rss_mib": round(peak)}))


def speed() -> None:
    for shape in ((2048, 2048), (64, 1024, 1024)):
        whole = max(shape[-2:])
        for tile in (None, whole):  # auto tiles vs one tile per slice (a whole-image pass)
            cmd = [sys.executable, __file__, "_speed", json.dumps([list(shape), tile])]
            print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["seams", "train", "speed", "all", "_speed"])
    parser.add_argument("args", nargs="?")
    parser.add_argument("--labels", choices=["dense", "sparse"], default="dense")
    parser.add_argument("--steps", type=int, default=None)
    a = parser.parse_args()
    if a.part == "_speed":
        shape, tile = json.loads(a.args)
        _one_speed(tuple(shape), tile)
        return 0
    if a.part in ("seams", "all"):
        seams()
    if a.part in ("train", "all"):
        for kind in (["dense", "sparse"] if a.part == "all" else [a.labels]):
            train(kind, a.steps)
    if a.part in ("speed", "all"):
        speed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
