"""tm.train_unet / tm.segment / tm.save_model: measured results, model files, bad input."""

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError, ModelFileError, OutputExistsError, TomomlError
from napari_tomoml.models.store import bundled_models, load_model
from napari_tomoml.sim.segmentation import annotation_strokes, segmentation_image
from napari_tomoml.training.segmentation import dice_scores

SMALL = dict(patch=48, steps=60, batch=4, depth=2, width=8, lr=5e-3, val_every=20, device="cpu")


@pytest.fixture(scope="module")
def pores():
    train = segmentation_image((128, 128), "pores", noise=0.08, seed=0)
    test = segmentation_image((128, 128), "pores", noise=0.08, seed=1)
    return train, test


@pytest.fixture(scope="module")
def dense_model(pores):
    (image, mask), _ = pores
    return tm.train_unet(image, mask, **SMALL)


@pytest.mark.slow
def test_dense_training_segments_an_unseen_image(pores, dense_model):
    _, (image, mask) = pores
    labels = tm.segment(image, dense_model, device="cpu")
    assert labels.shape == image.shape and labels.dtype == np.uint8
    dice = dice_scores(labels.astype(int), mask.astype(int), 2)
    assert min(dice) > 0.8, dice
    card = dense_model.card
    classes = dict(card["classes"])
    prior = classes.pop("prior")
    assert classes == {"values": [0, 1], "names": ["background", "class 1"], "sparse": False}
    assert sum(prior["patches"]) == pytest.approx(1, abs=1e-4) and sum(prior["images"]) == pytest.approx(1, abs=1e-4)
    assert card["training"]["steps"] == 60 and card["metrics"]["validation"]["dice"] > 0.7


@pytest.mark.slow
def test_sparse_strokes_train_and_predict_classes_one_to_k(pores):
    (image, mask), (test, test_mask) = pores
    strokes = annotation_strokes(mask, 0.05, seed=0)
    model = tm.train_unet(image, strokes, sparse=True, **SMALL)
    labels = tm.segment(test, model, device="cpu")
    assert set(np.unique(labels)) <= {1, 2}
    assert min(dice_scores(labels.astype(int) - 1, test_mask.astype(int), 2)) > 0.7
    # the card says what the prior correction did; a short run's posteriors may not earn it
    prior = model.card["classes"]["prior"]
    assert set(prior) == {"patches", "images", "annotated_kept", "folded"}
    assert prior["folded"] == (prior["annotated_kept"] >= 0.99)


def test_probabilities_and_volumes(pores, dense_model):
    _, (image, _) = pores
    prob = tm.segment(image, dense_model, device="cpu", probabilities=True)
    assert prob.shape == (2, *image.shape) and prob.dtype == np.float32
    np.testing.assert_allclose(prob.sum(0), 1, atol=1e-5)
    volume = np.stack([image, image[::-1]])
    labels = tm.segment(volume, dense_model, device="cpu", tile=96)
    assert labels.shape == volume.shape
    np.testing.assert_array_equal(labels[0], prob.argmax(0))  # same normalisation: a copy, flipped


def test_tiles_of_any_size_give_the_whole_image_result(pores, dense_model):
    _, (image, _) = pores
    whole = tm.segment(image, dense_model, device="cpu", probabilities=True, tile=128)
    for tile in (72, 100):
        tiled = tm.segment(image, dense_model, device="cpu", probabilities=True, tile=tile)
        assert np.abs(tiled - whole).max() <= 1e-4


def test_lazy_input_gives_the_same_labels(pores, dense_model):
    da = pytest.importorskip("dask.array")
    _, (image, _) = pores
    volume = np.stack([image, image])
    lazy = da.from_array(volume, chunks=(1, 64, 64))
    np.testing.assert_array_equal(tm.segment(lazy, dense_model, device="cpu"), tm.segment(volume, dense_model, device="cpu"))


def test_save_and_load_round_trip_without_overwriting(tmp_path, pores, dense_model):
    _, (image, _) = pores
    path = tm.save_model(dense_model, tmp_path / "pores-unet")
    assert path.name == "pores-unet.safetensors"
    loaded = load_model(path)
    assert loaded.card["classes"]["values"] == [0, 1]
    assert loaded.card["normalization"]["kind"] == "percentile"
    assert loaded.card["metrics"]["validation"] == dense_model.card["metrics"]["validation"]
    np.testing.assert_array_equal(tm.segment(image, str(path), device="cpu"), tm.segment(image, dense_model, device="cpu"))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="exists"):
        tm.save_model(dense_model, tmp_path / "pores-unet")
    assert path.read_bytes() == before


@pytest.mark.parametrize("image, labels, kw, message", [
    (np.zeros((64, 64)), np.zeros((64, 60), np.uint8), {}, "must match"),
    (np.zeros((64, 64)), np.full((64, 64), 3, np.uint8), {"classes": 3}, "outside the classes"),
    (np.zeros((64, 64)), np.zeros((64, 64), np.uint8), {"sparse": True}, "no annotated pixel"),
    (np.zeros((64, 64)), np.eye(64, dtype=np.uint8), {"patch": 128}, "larger than image"),
    (np.full((64, 64), np.nan), np.eye(64, dtype=np.uint8), {"patch": 32}, "NaN"),
    (np.zeros((64, 64)), np.eye(64, dtype=np.uint8), {"patch": 32, "loss": "l2"}, "loss 'l2'"),
])
def test_bad_training_input(image, labels, kw, message):
    with pytest.raises(InputError, match=message):
        tm.train_unet(image, labels, **{"steps": 1, "device": "cpu", "patch": 32, **kw})


def test_bad_segmentation_input(dense_model, tmp_path):
    image = np.zeros((32, 32), np.float32)
    image[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        tm.segment(image, dense_model, device="cpu")
    with pytest.raises(InputError, match="2-D"):
        tm.segment(np.zeros((2, 2, 16, 16)), dense_model, device="cpu")
    with pytest.raises(ModelFileError, match="not a U-Net"):
        tm.segment(np.zeros((16, 16)), "tomogan-lowdose", device="cpu")
    with pytest.raises(TomomlError, match="neither"):
        tm.segment(np.zeros((16, 16)), str(tmp_path / "missing"), device="cpu")


@pytest.mark.skipif("unet-synthetic" not in bundled_models(), reason="bundled model not trained yet")
def test_bundled_model_segments_generated_images():
    image, mask = segmentation_image((256, 256), "mixed", seed=7)
    labels = tm.segment(image, "unet-synthetic", device="cpu")
    card = load_model("unet-synthetic").card
    assert card["classes"]["names"] == ["matrix", "pore", "inclusion"]
    assert min(card["metrics"]["heldout"]["dice"].values()) >= 0.9
    assert min(dice_scores(labels.astype(int), mask.astype(int), 3)) > 0.85


def test_lower_precision_segmentation_against_fp32():
    pytest.importorskip("onnxruntime")
    from napari_tomoml.progress import run_to_end
    from napari_tomoml.tasks.segment import segment_steps

    image, _ = segmentation_image((128, 128), "mixed", seed=8)
    fp32 = tm.segment(image, "unet-synthetic", device="cpu")
    labels, meta = run_to_end(segment_steps(image, "unet-synthetic", device="cpu", precision="int8"))
    report = meta["precision"]
    assert report["used"] == "int8" and np.isfinite(report["psnr_db"])
    assert (labels == fp32).mean() > 0.99  # logits at ~36 dB (measured): labels barely move
    _, meta = run_to_end(segment_steps(image, "unet-synthetic", device="cpu", precision="auto"))
    auto = meta["precision"]
    assert (auto["used"] == "fp32") == (auto.get("psnr_db", 99) < 45)  # auto keeps >= 45 dB or falls back
