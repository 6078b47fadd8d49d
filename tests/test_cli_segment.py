"""``tomoml train unet`` and ``tomoml segment`` end to end on small generated images."""

import numpy as np
import pytest

from napari_tomoml import cli
from napari_tomoml.models.store import load_model
from napari_tomoml.sim.segmentation import annotation_strokes, segmentation_image


@pytest.mark.slow
def test_train_then_segment(tmp_path, capsys):
    image, mask = segmentation_image((96, 96), "pores", noise=0.05, seed=0)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "strokes.npy", annotation_strokes(mask, 0.05, seed=0))
    code = cli.main(["train", "unet", str(tmp_path / "seg"), "--image", str(tmp_path / "image.npy"),
                     "--labels", str(tmp_path / "strokes.npy"), "--sparse", "--patch", "48", "--steps", "6",
                     "--depth", "2", "--width", "4", "--device", "cpu", "-q"])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    card = load_model(tmp_path / "seg.safetensors").card
    assert card["classes"]["values"] == [1, 2] and card["classes"]["sparse"] is True

    code = cli.main(["segment", str(tmp_path / "image.npy"), str(tmp_path / "labels.tif"), "--model",
                     str(tmp_path / "seg.safetensors"), "--probabilities", str(tmp_path / "p.npy"), "--device", "cpu",
                     "-q"])
    assert code == 0
    import tifffile

    labels = tifffile.imread(tmp_path / "labels.tif")
    prob = np.load(tmp_path / "p.npy")
    assert prob.shape == (2, 96, 96) and labels.shape == (96, 96)
    np.testing.assert_array_equal(labels, prob.argmax(0) + 1)

    before = (tmp_path / "labels.tif").read_bytes()
    code = cli.main(["segment", str(tmp_path / "image.npy"), str(tmp_path / "labels.tif"), "--model",
                     str(tmp_path / "seg.safetensors"), "-q"])
    assert code == 2 and "exists" in capsys.readouterr().err
    assert (tmp_path / "labels.tif").read_bytes() == before
