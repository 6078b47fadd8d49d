"""tomoml ptycho simulate → train → predict → live, end to end on tiny data; errors exit 2."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomoml.cli import main


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ptycho")
    data = folder / "scan"
    assert main(["ptycho", "simulate", str(data), "--size", "16", "--shape", "48", "48", "--aperture", "0.3",
                 "--defocus", "0.6", "--overlap", "0.5", "--photons", "1e4"]) == 0
    model = folder / "pnn"
    assert main(["ptycho", "train", str(data / "diffraction.npz"), str(data / "labels.npy"), str(model),
                 "--size", "16", "--steps", "4", "--batch", "8", "--nconv", "4", "--device", "cpu", "--onnx", "-q"]) == 0
    return folder, data, model


def test_simulate_writes_the_published_layout(workflow):
    _, data, _ = workflow
    with np.load(data / "diffraction.npz") as f:
        assert f.files == ["arr_0"]
        patterns = f["arr_0"]
    labels, pos = np.load(data / "labels.npy"), np.load(data / "positions.npy")
    assert patterns.shape[1:] == (16, 16) and np.iscomplexobj(labels) and len(labels) == len(pos) == len(patterns)


def test_train_predict_and_stitch(workflow, capsys):
    folder, data, model = workflow
    assert (folder / "pnn.safetensors").is_file() and (folder / "pnn.json").is_file() and (folder / "pnn.onnx").is_file()
    out = folder / "phase.npy"
    assert main(["ptycho", "predict", str(data / "diffraction.npz"), str(out), "--model", str(model) + ".safetensors",
                 "--positions", str(data / "positions.npy"), "--shape", "48", "48", "--device", "cpu"]) == 0
    assert np.load(out).shape == (48, 48)
    assert "patterns/s" in capsys.readouterr().out
    # refuses to overwrite
    assert main(["ptycho", "predict", str(data / "diffraction.npz"), str(out), "--model", str(model) + ".onnx"]) == 2


def test_live_from_a_simulated_detector(workflow, capsys):
    folder, data, model = workflow
    out = folder / "live.npy"
    assert main(["ptycho", "live", "--model", str(model) + ".safetensors", "--simulate", str(data / "diffraction.npz"),
                 "--positions", str(data / "positions.npy"), "--rate", "500", "--device", "cpu", "--out", str(out),
                 "-q"]) == 0
    text = capsys.readouterr().out
    n = len(np.load(data / "positions.npy"))
    assert f"inferred {n} of {n} frames (dropped 0, lost 0)" in text
    assert np.load(out).ndim == 2


def test_live_needs_one_source(workflow, capsys):
    _, data, model = workflow
    assert main(["ptycho", "live", "--model", str(model) + ".safetensors"]) == 2
    assert "choose one frame source" in capsys.readouterr().err
