"""An independent NumPy forward pass of a Keras 2.2 functional model, straight from its HDF5 file.

Reads the graph from ``model_config`` and the weights from ``model_weights`` and evaluates the
layers TomoGAN uses (InputLayer, Conv2D, MaxPooling2D, UpSampling2D, Concatenate) in NHWC,
with no torch and none of the importer's code, as ground truth for the importer test.
"""

from __future__ import annotations

import json

import h5py
import numpy as np


def _conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, padding: str) -> np.ndarray:
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], h, w, kernel.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", x[:, i : i + h, j : j + w, :], kernel[i, j])
    return out + bias


def _activation(x: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0)
    assert name == "linear", name
    return x


def keras_forward(h5_path, image: np.ndarray) -> np.ndarray:
    """Run the saved model on ``image`` (N, H, W, C) with H, W even at every pooling level."""
    with h5py.File(h5_path, "r") as f:
        config = json.loads(f.attrs["model_config"])["config"]
        group = f["model_weights"]
        outputs: dict[str, np.ndarray] = {}
        for layer in config["layers"]:
            name, kind, cfg = layer["name"], layer["class_name"], layer["config"]
            inputs = [outputs[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
            if kind == "InputLayer":
                y = image.astype(np.float64)
            elif kind == "Conv2D":
                kernel = group[name][name]["kernel:0"][()].astype(np.float64)
                bias = group[name][name]["bias:0"][()].astype(np.float64)
                y = _activation(_conv2d(inputs[0], kernel, bias, cfg["padding"]), cfg["activation"])
            elif kind == "MaxPooling2D":
                x = inputs[0]
                n, h, w, c = x.shape
                y = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            elif kind == "UpSampling2D":
                assert cfg.get("interpolation", "nearest") == "nearest"
                y = inputs[0].repeat(2, axis=1).repeat(2, axis=2)
            elif kind == "Concatenate":
                y = np.concatenate(inputs, axis=-1)
            else:
                raise NotImplementedError(kind)
            outputs[name] = y
        return outputs[config["output_layers"][0][0]]
