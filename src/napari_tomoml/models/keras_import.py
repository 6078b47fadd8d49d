"""Import the published TomoGAN generator (Keras 2.2.4 HDF5) into a napari-tomoml model file.

The authors' file (``TomoGAN.h5``, trained on APS shale data) holds a depth-1 generator that works
on a 0..255 value scale. The importer rebuilds the network from the file's own ``model_config``,
checks that it is the TomoGAN graph (layer widths, kernel sizes, skip connections), converts
each Keras kernel (H, W, in, out) to torch (out, in, H, W) and writes our model file.

Its UpSampling2D layers carry no ``interpolation`` setting, which in Keras 2.2.4 means nearest
neighbour, so the imported model uses ``upsample="nearest"`` (the paper says bilinear).

Normalisation convention for the imported model: the volume's 0.5 and 99.5 percentiles map to
0 and 255 (the published training data were 8-bit images of reconstructions stretched to their
range), and the output is mapped back to the volume's units.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelFileError
from .store import model_cache_dir, save_model
from .tomogan import TomoGAN

# Keras conv layer order in the published graph -> attribute path in our TomoGAN
KERAS_TO_TORCH = {
    "conv2d": "stem",
    "conv2d_1": "enc1.0", "conv2d_2": "enc1.1",
    "conv2d_3": "enc2.0", "conv2d_4": "enc2.1",
    "conv2d_5": "enc3.0", "conv2d_6": "enc3.1",
    "conv2d_7": "bottom",
    "conv2d_8": "dec3.0", "conv2d_9": "dec3.1",
    "conv2d_10": "dec2.0", "conv2d_11": "dec2.1",
    "conv2d_12": "dec1.0", "conv2d_13": "dec1.1",
    "conv2d_14": "head", "conv2d_15": "out",
}
# concatenate layer -> (skip layer, upsampling layer), the order the Keras graph concatenates in
SKIPS = {
    "concatenate": ("conv2d_6", "up_sampling2d"),
    "concatenate_1": ("conv2d_4", "up_sampling2d_1"),
    "concatenate_2": ("conv2d_2", "up_sampling2d_2"),
}
IMPORTED_NORMALIZATION = {"kind": "percentile", "percentiles": [0.5, 99.5], "range": [0.0, 255.0]}


def read_keras_tomogan(h5_path: str | Path) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The graph (layer name -> Keras layer dict) and conv weights (name -> (kernel, bias)) of the file.

    Raises :class:`ModelFileError` when the file is not a Keras HDF5 model of the TomoGAN graph.

    >>> layers, weights = read_keras_tomogan("TomoGAN.h5")        # doctest: +SKIP
    >>> weights["conv2d_1"][0].shape                              # doctest: +SKIP
    (3, 3, 8, 32)
    """
    import h5py

    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise ModelFileError(f"Keras model file {h5_path} does not exist")
    try:
        with h5py.File(h5_path, "r") as f:
            if "model_config" not in f.attrs or "model_weights" not in f:
                raise ModelFileError(f"{h5_path} is an HDF5 file but not a saved Keras model (no model_config/model_weights)")
            config = json.loads(f.attrs["model_config"])
            group = f["model_weights"]
            weights = {}
            for name in KERAS_TO_TORCH:
                if name not in group:
                    raise ModelFileError(f"{h5_path} is not the TomoGAN generator: it has no layer {name!r}")
                # Keras stores <layer>/<layer>/kernel:0 and bias:0 (older files may nest differently)
                tensors: dict[str, np.ndarray] = {}
                group[name].visititems(
                    lambda key, obj: tensors.__setitem__(key.rsplit("/", 1)[-1], obj[()])
                    if isinstance(obj, h5py.Dataset) else None
                )
                if "kernel:0" not in tensors or "bias:0" not in tensors:
                    raise ModelFileError(f"{h5_path}: layer {name!r} lacks kernel or bias weights")
                weights[name] = (tensors["kernel:0"], tensors["bias:0"])
    except OSError as exc:
        raise ModelFileError(f"{h5_path} is not a readable HDF5 file ({exc})") from exc
    layers = {layer["name"]: layer for layer in config.get("config", {}).get("layers", [])}
    return layers, weights


def _inbound(layer: dict) -> list[str]:
    nodes = layer.get("inbound_nodes") or [[]]
    return [node[0] for node in nodes[0]]


def _check_graph(h5_path: Path, layers: dict) -> str:
    """Verify the TomoGAN topology; return the upsampling mode the file uses."""
    for concat, expected in SKIPS.items():
        if concat not in layers or tuple(_inbound(layers[concat])) != expected:
            got = _inbound(layers[concat]) if concat in layers else "absent"
            raise ModelFileError(f"{h5_path} is not the TomoGAN generator: {concat} joins {got}, expected {list(expected)}")
    for name in ("max_pooling2d", "max_pooling2d_1", "max_pooling2d_2"):
        if layers.get(name, {}).get("class_name") != "MaxPooling2D":
            raise ModelFileError(f"{h5_path} is not the TomoGAN generator: no MaxPooling2D layer {name!r}")
    modes = {layers[up]["config"].get("interpolation", "nearest") for _, up in SKIPS.values()}
    sizes = {tuple(layers[up]["config"].get("size", ())) for _, up in SKIPS.values()}
    if len(modes) != 1 or sizes != {(2, 2)} or not modes <= {"nearest", "bilinear"}:
        raise ModelFileError(f"{h5_path}: unsupported upsampling {modes} / {sizes}; TomoGAN uses 2x nearest or bilinear")
    return modes.pop()


def tomogan_from_keras(h5_path: str | Path) -> TomoGAN:
    """Build our :class:`TomoGAN` with the published file's weights (no file written).

    >>> net = tomogan_from_keras("TomoGAN.h5")                    # doctest: +SKIP
    >>> net.depth, net.upsample                                   # doctest: +SKIP
    (1, 'nearest')
    """
    h5_path = Path(h5_path)
    layers, weights = read_keras_tomogan(h5_path)
    upsample = _check_graph(h5_path, layers)
    depth = int(weights["conv2d"][0].shape[2])
    try:
        net = TomoGAN(depth=depth, upsample=upsample)
    except ValueError as exc:
        raise ModelFileError(f"{h5_path}: {exc}") from exc
    state = net.state_dict()
    for keras_name, torch_name in KERAS_TO_TORCH.items():
        kernel, bias = weights[keras_name]
        activation = layers[keras_name]["config"].get("activation")
        wanted = "linear" if keras_name == "conv2d_15" else "relu"
        if activation != wanted:
            raise ModelFileError(f"{h5_path}: layer {keras_name} uses activation {activation!r}, TomoGAN has {wanted!r}")
        # Keras kernels are (kh, kw, in, out); torch wants (out, in, kh, kw)
        converted = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32))
        target = state[f"{torch_name}.weight"]
        if converted.shape != target.shape:
            raise ModelFileError(
                f"{h5_path}: layer {keras_name} kernel {kernel.shape} does not fit TomoGAN {torch_name} {tuple(target.shape)}"
            )
        target.copy_(converted)
        state[f"{torch_name}.bias"].copy_(torch.from_numpy(bias.astype(np.float32)))
    return net.eval()


def import_tomogan_keras(h5_path: str | Path, out_path: str | Path, *, overwrite: bool = False) -> Path:
    """Convert the published Keras TomoGAN file into our model file; returns the weights path.

    The result loads with ``tm.denoise(volume, model=<returned path>)``. Its card records
    depth 1, nearest upsampling and the 0..255 input scale (percentiles 0.5/99.5 -> 0/255), and
    the SHA-256 of the source file. An existing model file is replaced only with ``overwrite``.

    >>> import napari_tomoml as tm
    >>> path = tm.import_tomogan_keras("TomoGAN.h5", "models/tomogan-aps-shale")  # doctest: +SKIP
    >>> clean = tm.denoise(noisy_volume, model=path)                               # doctest: +SKIP
    """
    from ..io.writers import check_output
    from .store import _paths, _sha256

    h5_path = Path(h5_path)
    for target in _paths(Path(out_path)):
        check_output(target, overwrite=overwrite, inputs=[h5_path])  # before the work
    net = tomogan_from_keras(h5_path)
    return save_model(
        net,
        out_path,
        overwrite=overwrite,
        normalization=dict(IMPORTED_NORMALIZATION),
        training={
            "source": f"imported from {h5_path.name} (Keras 2.2.4, published TomoGAN generator)",
            "source_sha256": _sha256(h5_path),
            "data": "APS shale: FBP of every 32nd projection -> 100-iteration SIRT of all projections, 8-bit",
            "license": "Apache-2.0 (weights by the TomoGAN authors)",
        },
        description="Published TomoGAN generator (Liu et al. 2020), imported from Keras HDF5",
    )


def import_tomogan_keras_cached(h5_path: str | Path) -> Path:
    """The imported model file for a Keras ``.h5``, converting it on first use into :func:`model_cache_dir`.

    The cache is keyed by the file's content (SHA-256), not its name or date: two different
    ``TomoGAN.h5`` files never share an entry, and a replaced file is imported again.

    >>> import_tomogan_keras_cached("TomoGAN.h5")   # doctest: +SKIP
    PosixPath('~/.cache/napari-tomoml/models/TomoGAN-3f2a9c0d1e4b5a67.safetensors')
    """
    from .store import _paths, _sha256

    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise ModelFileError(f"Keras model file {h5_path} does not exist")
    digest = _sha256(h5_path)
    target = model_cache_dir() / f"{h5_path.stem}-{digest[:16]}.safetensors"
    weights, card = _paths(target)
    cached = weights.is_file() and card.is_file()
    if cached:
        try:
            cached = json.loads(card.read_text()).get("training", {}).get("source_sha256") == digest
        except (OSError, ValueError, AttributeError):
            cached = False
    if not cached:
        import_tomogan_keras(h5_path, target.with_suffix(""), overwrite=True)
    return target
