"""Train the bundled example segmenter ``unet-synthetic`` and measure it on held-out images.

    python scripts/train_unet.py                      # writes src/napari_tomoml/weights/unet-synthetic.*
    python scripts/train_unet.py --steps 50 --out /tmp/try --overwrite     # a quick try

Training data: two generated 1024 x 1024 "mixed" images (matrix, pores, inclusions; seeds 0 and
1, :func:`napari_tomoml.sim.segmentation.segmentation_image`) with their exact masks. Test data:
two more of the same family (seeds 100 and 101) the model never sees; their Dice per class goes
into the model card. Seeded and single-threaded: the same command gives the same model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import napari_tomoml as tm  # noqa: E402
from napari_tomoml.sim.segmentation import class_names, segmentation_image  # noqa: E402
from napari_tomoml.training.segmentation import dice_scores  # noqa: E402

TRAIN_SEEDS = (0, 1)
TEST_SEEDS = (100, 101)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--out", default=str(ROOT / "src" / "napari_tomoml" / "weights" / "unet-synthetic"))
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (resumable)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    family, names = "mixed", class_names("mixed")
    train = [segmentation_image((args.size, args.size), family, seed=s) for s in TRAIN_SEEDS]
    test = [segmentation_image((args.size, args.size), family, seed=s) for s in TEST_SEEDS]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = tm.train_unet([im for im, _ in train], [m for _, m in train], steps=args.steps, device="cpu",
                          class_names=names, checkpoint_dir=args.checkpoint, progress=True)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    dice = np.array([dice_scores(tm.segment(im, model, device="cpu").astype(np.int64), m.astype(np.int64), 3)
                     for im, m in test])
    per_class = {name: round(float(d), 4) for name, d in zip(names, dice.mean(0))}
    print(f"held-out Dice per class: {per_class}; training {cpu:.0f} s CPU ({wall:.0f} s wall)")
    model.card["metrics"]["heldout"] = {
        "dice": per_class,
        "mean_dice": round(float(dice.mean()), 4),
        "data": f"{len(TEST_SEEDS)} generated {args.size}x{args.size} '{family}' images, seeds {list(TEST_SEEDS)}",
    }
    model.card["training"].update({
        "data": f"{len(TRAIN_SEEDS)} generated {args.size}x{args.size} '{family}' images, seeds {list(TRAIN_SEEDS)}, dense masks",
        "cpu_time_s": round(cpu, 1),
        "command": "python scripts/train_unet.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    })
    model.card["description"] = ("Example U-Net (depth 3, width 16) for noisy images of a matrix with pores (dark) "
                                 "and inclusions (bright); trained on generated images")
    path = tm.save_model(model, args.out, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
