"""Turn a torch network into the NumPy batch function the tiler calls, at a chosen precision."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .precision import MIN_PSNR_DB, autocast, psnr, resolve_precision

Predict = Callable[[np.ndarray], np.ndarray]
# int8 sessions by (weights, calibration data): the same model on the same data is quantised once,
# and its quality checked once (PSNR by precision, weights and tiles)
_INT8_SESSIONS: OrderedDict = OrderedDict()
_INT8_KEEP = 2
_CHECKED: dict[tuple[str, str], float] = {}


def _declare(predict: Predict, module: nn.Module) -> Predict:
    """What the tiler needs to reproduce a whole-image pass (see inference/tiler.py)."""
    predict.receptive_field = int(getattr(module, "receptive_field", 0))
    predict.size_multiple = int(getattr(module, "size_multiple", 1))
    predict.bytes_per_pixel = float(getattr(module, "bytes_per_pixel", 4096))
    return predict


def _fingerprint(module: nn.Module, data: np.ndarray) -> str:
    """A digest of a network's weights and some data: the same model on the same data."""
    digest = hashlib.sha256(np.ascontiguousarray(data).tobytes() + str(data.shape).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def torch_predictor(
    module: nn.Module, device: torch.device, *, channels_last: bool = True, precision: str = "fp32"
) -> Predict:
    """A ``(B, C, h, w) -> (B, K, h, w)`` float32 NumPy function running ``module`` in inference mode.

    The function carries the module's ``receptive_field``, ``size_multiple`` and
    ``bytes_per_pixel`` (0, 1 and 4096 when it declares none) for the seamless tiler.

    ``channels_last`` memory layout makes convolutions markedly faster on CPU (oneDNN) and on
    recent GPUs; it changes no result beyond float rounding. ``precision`` is ``"fp32"`` or
    ``"bf16"`` (autocast).

    >>> f = torch_predictor(nn.Conv2d(3, 1, 1), torch.device("cpu"))
    >>> f(np.zeros((2, 3, 8, 8), np.float32)).shape
    (2, 1, 8, 8)
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    module = module.to(device=device, memory_format=memory_format).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), autocast(precision, device):
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(device).to(memory_format=memory_format)
            return module(x).float().cpu().numpy()

    return _declare(predict, module)


def onnx_int8_predictor(module: nn.Module, calibration: np.ndarray) -> Predict:
    """``module`` statically quantised to int8 by ONNX Runtime and run by it on the CPU.

    The network is exported to ONNX (any batch and tile size), its activation ranges calibrated
    on ``calibration`` (``(B, C, h, w)`` inputs like the real ones, sides multiples of the
    network's ``size_multiple``), and weights quantised per output channel (QDQ format: int8
    weights, uint8 activations). ONNX Runtime uses as many threads as torch.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = np.ascontiguousarray(calibration, np.float32)
    key = _fingerprint(module, calibration)
    if key not in _INT8_SESSIONS:

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter([{"x": tile[None]} for tile in calibration])

            def get_next(self):
                return next(self.items, None)

        cpu = copy.deepcopy(module).to("cpu", memory_format=torch.contiguous_format).eval()
        axes = {0: "batch", 2: "height", 3: "width"}
        side = 8 * int(getattr(module, "size_multiple", 8))  # a small trace: any size runs after
        example = torch.zeros((1, calibration.shape[1], side, side))
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape checks that hold for every tile
            plain, prepared, quantised = (Path(tmp) / f"{n}.onnx" for n in ("plain", "prepared", "int8"))
            with torch.inference_mode(False), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(cpu, (example,), str(plain), input_names=["x"],
                                  output_names=["y"], dynamic_axes={"x": axes, "y": axes}, dynamo=False)
            quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(quantised), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            _INT8_SESSIONS[key] = ort.InferenceSession(
                quantised.read_bytes(), options, providers=["CPUExecutionProvider"]
            )
        while len(_INT8_SESSIONS) > _INT8_KEEP:
            _INT8_SESSIONS.popitem(last=False)
    _INT8_SESSIONS.move_to_end(key)
    session = _INT8_SESSIONS[key]

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"x": np.ascontiguousarray(batch, np.float32)})[0]

    return _declare(predict, module)


def calibration_tiles(images: list[np.ndarray], *, side: int = 256, multiple: int = 8, per_image: int = 2) -> np.ndarray:
    """``per_image`` tiles ``(C, side, side)`` from each ``(C, H, W)`` image, spread along its whole
    diagonal (``side`` shrinks to the image, in multiples of ``multiple``): the data a lower
    precision is calibrated and checked on.

    >>> calibration_tiles([np.zeros((3, 100, 300), np.float32)], side=64).shape
    (2, 3, 64, 64)
    """
    h, w = images[0].shape[-2:]
    side = max(multiple, min(side, h, w) // multiple * multiple)
    tiles = []
    for image in images:
        for f in np.linspace(0, 1, per_image) if per_image > 1 else [0.5]:
            y, x = int((h - side) * f), int((w - side) * f)
            tiles.append(image[:, y : y + side, x : x + side])
    return np.stack(tiles).astype(np.float32)


def make_predictor(
    module: nn.Module,
    device: torch.device,
    precision: str = "fp32",
    calibration: Callable[[], np.ndarray] | None = None,
) -> tuple[Predict, dict[str, Any]]:
    """The predict function at ``precision`` and a report of what ran: ``{"requested", "used",
    "psnr_db"}``, the PSNR (dB) of the lower precision's output against fp32 on the calibration
    tiles (``calibration()`` makes them; int8 is calibrated on half of them and checked on the
    other half; absent for fp32).

    ``"auto"`` keeps its candidate only at :data:`~napari_tomoml.inference.precision.MIN_PSNR_DB`
    or more, else falls back to fp32 (``"fallback"`` says why).

    >>> f, report = make_predictor(nn.Conv2d(3, 1, 1), torch.device("cpu"), "fp32")
    >>> report
    {'requested': 'fp32', 'used': 'fp32'}
    """
    chosen = resolve_precision(precision, device)
    fp32 = torch_predictor(module, device)
    report: dict[str, Any] = {"requested": precision, "used": chosen}
    if chosen == "fp32":
        return fp32, report
    if calibration is None:
        raise ValueError("a lower precision needs calibration tiles to measure its quality")
    tiles = calibration()
    # int8 calibrates on every other tile and is checked on the rest, which it has not seen
    fit, check = (tiles[0::2], tiles[1::2]) if len(tiles) > 1 else (tiles, tiles)
    low = onnx_int8_predictor(module, fit) if chosen == "int8" else torch_predictor(module, device, precision="bf16")
    key = (f"{chosen} {device}", _fingerprint(module, tiles))
    if key not in _CHECKED:
        reference = np.concatenate([fp32(t[None]) for t in check])
        _CHECKED[key] = round(psnr(np.concatenate([low(t[None]) for t in check]), reference), 2)
    report["psnr_db"] = _CHECKED[key]
    if precision == "auto" and report["psnr_db"] < MIN_PSNR_DB:
        report.update(used="fp32", fallback=f"{chosen} reached {report['psnr_db']} dB < {MIN_PSNR_DB} dB")
        return fp32, report
    return low, report
