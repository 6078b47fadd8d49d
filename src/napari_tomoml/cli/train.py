"""``tomoml train tomogan|unet``: train a TomoGAN denoiser or a U-Net segmenter into a model file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import not_an_input, read_volume, show_progress

ORDER = 40


def cmd_train_tomogan(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io.writers import check_output
    from ..models.store import _paths
    from ..progress import run_to_end
    from ..tasks.train import check_options, default_checkpoint, train_and_save_steps

    check_options({"steps": args.steps, "batch": args.batch, "crop": args.crop, "val_every": args.val_every})
    for target in _paths(Path(args.output)):  # before reading the training data
        check_output(target, overwrite=args.overwrite)
    if bool(args.pairs) == bool(args.noisy or args.clean):
        raise InputError("give either --pairs FILE.h5 or both --noisy and --clean volumes")
    if args.pairs:
        source: dict[str, Any] = {"hdf5": args.pairs}
    else:
        if not (args.noisy and args.clean):
            raise InputError("--noisy and --clean go together")
        source = {"noisy": read_volume(Path(args.noisy)), "clean": read_volume(Path(args.clean)),
                  "val_fraction": args.val_fraction}
    out = Path(args.output)
    options: dict[str, Any] = {
        "depth": args.depth, "steps": args.steps, "batch": args.batch, "crop": args.crop,
        "val_every": args.val_every, "seed": args.seed, "device": args.device,
        "losses": {"lambda_mse": args.lambda_mse, "lambda_adv": args.lambda_adv, "lambda_vgg": args.lambda_vgg},
    }
    if args.vgg:
        options["vgg"] = args.vgg
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(out)
    steps = train_and_save_steps(source, str(out), options, checkpoint_dir=checkpoint, resume=args.resume,
                                 overwrite=args.overwrite)
    path, best = run_to_end(steps, progress=show_progress(args))
    scores = ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k in ("psnr", "ssim", "val_loss"))
    print(f"wrote {path}" + (f" (best validation: {scores})" if scores else ""))
    return 0



def _parse_classes(text: str | None):
    from ..errors import InputError

    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--classes {text!r}: give a number of classes (3) or label values (0,1,2)") from None
    return values[0] if len(values) == 1 and "," not in text else values



def cmd_train_unet(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import OutputExistsError
    from ..progress import run_to_end
    from ..tasks.segment import save_model, train_unet_steps

    out = Path(args.output)
    stem = out.with_suffix("") if out.suffix in (".safetensors", ".json") else out
    for path in (stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")):
        if path.exists() and not args.overwrite:
            raise OutputExistsError(f"model {str(path)!r} exists; pass --overwrite to replace it")
    not_an_input(stem.with_name(stem.name + ".safetensors"), [args.image, args.labels])
    classes = _parse_classes(args.classes)
    image = np.asarray(read_volume(Path(args.image)))
    labels = np.asarray(read_volume(Path(args.labels)))
    options: dict[str, Any] = {"batch": args.batch, "seed": args.seed, "depth": args.depth, "width": args.width}
    if args.checkpoint:
        options["checkpoint_dir"] = args.checkpoint
    model = run_to_end(
        train_unet_steps(image, labels, classes=classes, sparse=args.sparse, patch=args.patch, steps=args.steps,
                         loss=args.loss, device=args.device, **options),
        progress=show_progress(args),
    )
    path = save_model(model, stem, overwrite=args.overwrite)
    dice = model.card["metrics"].get("validation", {})
    scores = ", ".join(f"{k} {v:.3f}" for k, v in dice.items())
    print(f"wrote {path}" + (f" (validation: {scores})" if scores else ""))
    return 0



def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (train tomogan ...)")
    train_sub = p.add_subparsers(dest="model", metavar="MODEL")
    t = train_sub.add_parser(
        "tomogan",
        help="train a TomoGAN denoiser on noisy/clean volume pairs",
        description="Train TomoGAN on paired volumes: --pairs FILE.h5 (datasets train_ns, train_gt, "
        "test_ns, test_gt) or --noisy VOLUME --clean VOLUME (the last slices are held out for validation).",
    )
    t.add_argument("output", help="model to write (OUTPUT.safetensors + OUTPUT.json)")
    t.add_argument("--pairs", help="HDF5 with train_ns/train_gt/test_ns/test_gt")
    t.add_argument("--noisy", help="noisy volume (.npy/.tif/.h5/.zarr)")
    t.add_argument("--clean", help="clean volume, same shape")
    t.add_argument("--val-fraction", type=float, default=0.2, help="slices held out for validation")
    t.add_argument("--depth", type=int, default=3, choices=[1, 3, 5, 7], help="adjacent slices in")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=64)
    t.add_argument("--val-every", type=int, default=50)
    t.add_argument("--lambda-mse", type=float, default=1.0)
    t.add_argument("--lambda-adv", type=float, default=1e-3)
    t.add_argument("--lambda-vgg", type=float, default=0.0, help="perceptual loss weight (needs --vgg)")
    t.add_argument("--vgg", help="VGG19 weights for the perceptual loss")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--checkpoint", metavar="DIR", help="where to checkpoint at each validation "
                   "(default: OUTPUT.checkpoint beside the model; removed once the model is saved)")
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in the checkpoint "
                   "(same settings and data); ends with the weights an uninterrupted run would have")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model, or start over "
                   "from an interrupted run's checkpoint")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train_tomogan)

    t = train_sub.add_parser(
        "unet",
        help="train a U-Net segmenter on an image and its labels",
        description="Train a U-Net on class-balanced patches of IMAGE (2-D, or a volume's slices) and LABELS "
        "(same shape): a dense mask (every value a class, 0 = background) or, with --sparse, painted "
        "annotations (0 = not annotated, classes 1..K). Writes OUTPUT.safetensors + OUTPUT.json.",
    )
    t.add_argument("output", help="model to write (OUTPUT.safetensors + OUTPUT.json)")
    t.add_argument("--image", required=True, help="image or volume (.npy/.tif/.h5/.zarr)")
    t.add_argument("--labels", required=True, help="labels of the same shape (.npy/.tif/.h5/.zarr)")
    t.add_argument("--sparse", action="store_true", help="0 in LABELS means 'not annotated'")
    t.add_argument("--classes", help="number of classes (3) or label values (0,1,2); default: from the labels")
    t.add_argument("--patch", type=int, default=128, help="patch side in pixels (default 128)")
    t.add_argument("--steps", type=int, default=None, help="training steps (default 300)")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--depth", type=int, default=3, help="U-Net pooling levels (default 3)")
    t.add_argument("--width", type=int, default=16, help="channels of the first level (default 16)")
    t.add_argument("--loss", default="ce+dice", help="ce, wce, bce, dice or a sum like ce+dice (default)")
    t.add_argument("--checkpoint", help="checkpoint folder (resumed when it holds one)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train_unet)
