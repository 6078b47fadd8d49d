"""t-SNE map and outlier scores: corrupted sinograms rank on top, chunks equal one pass, bad input refused."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.progress import run_to_end
from napari_tomoml.sim.corrupt import corrupted_sinogram_stack
from napari_tomoml.tasks import _features, embed


@pytest.fixture(scope="module")
def sinograms():
    """The issue's stack: 500 sinograms, 10 corrupted (each of 5 faults twice)."""
    return corrupted_sinogram_stack(500, n_corrupt_each=2, seed=0)


def _in_top(scores, kinds, top=20):
    rank = np.argsort(np.argsort(-scores))
    return int((rank[kinds != ""] < top).sum())


@pytest.mark.slow
def test_sinogram_physics_finds_corrupted_sinograms(sinograms):
    stack, theta, kinds = sinograms
    found = {f: _in_top(tm.outlier_scores(stack, features=f, theta=theta), kinds) for f in
             ("sinogram", "pixels", "spectrum")}
    print(f"corrupted sinograms in the top 20 of 500: {found}")
    assert found["sinogram"] >= 9
    # generic image features miss the faults that only physics sees (centre, stripes)
    assert found["sinogram"] > max(found["pixels"], found["spectrum"])


def test_scores_without_theta_assume_180_degrees(sinograms):
    stack, theta, kinds = sinograms
    a = tm.outlier_scores(stack[:120], features="sinogram")
    b = tm.outlier_scores(stack[:120], features="sinogram", theta=theta)
    assert np.allclose(a, b)


def test_chunked_features_equal_one_pass(monkeypatch, sinograms):
    stack = sinograms[0][:150]
    whole = {f: run_to_end(_features.feature_steps(stack, f)) for f in ("sinogram", "spectrum", "pixels")}
    item = 4 * stack[0].size
    monkeypatch.setattr(_features, "CHUNK_BYTES", 7 * item)  # chunks of 7 items (pixels: of 50)
    for f, table in whole.items():
        chunked = run_to_end(_features.feature_steps(stack, f))
        assert chunked.names == table.names
        if f == "pixels":  # one-pass covariance: the same PCA whatever the chunks (leading axes)
            assert np.allclose(chunked.values[:, :10], table.values[:, :10], rtol=1e-6, atol=1e-6)
        else:
            assert np.allclose(chunked.values, table.values, rtol=1e-6, atol=1e-9)


def test_pixel_pca_equals_scikit_learn(sinograms):
    from sklearn.decomposition import PCA

    stack = sinograms[0][:150]
    table = run_to_end(_features.feature_steps(stack, "pixels"))
    f = _features._block_factor(stack.shape)
    truth = PCA(n_components=10).fit_transform(_features._downsample(stack.astype(np.float32), f).astype(np.float64))
    for j in range(10):  # the same axes up to sign (and to rounding where eigenvalues nearly tie)
        sign = np.sign(truth[:, j] @ table.values[:, j])
        assert np.allclose(sign * table.values[:, j], truth[:, j], atol=1e-3 * np.abs(truth[:, j]).max())


def test_lazy_stack_gives_the_same_scores(sinograms):
    da = pytest.importorskip("dask.array")
    stack = sinograms[0][:100]
    lazy = da.from_array(stack, chunks=(16, -1, -1))
    plain = tm.outlier_scores(stack, features="sinogram")
    assert np.allclose(tm.outlier_scores(lazy, features="sinogram"), plain)


def test_embed_separates_two_kinds_of_items():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (150, 12, 12))
    b = rng.normal(0, 1, (150, 12, 12)) + np.linspace(-2, 2, 12)  # a ramp: another population
    stack = np.concatenate([a, b]).astype(np.float32)
    labels = np.repeat([0, 1], 150)
    for method in ("tsne", "pca"):
        xy = tm.embed(stack, method=method, perplexity=20)
        assert xy.shape == (300, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
        # each point's nearest neighbour on the map is of its own kind
        d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        assert (labels[d.argmin(1)] == labels).mean() > 0.95, method


def test_embed_is_reproducible_with_a_seed():
    stack = np.random.default_rng(2).random((120, 8, 8)).astype(np.float32)
    assert np.array_equal(tm.embed(stack, perplexity=10, seed=3), tm.embed(stack, perplexity=10, seed=3))


def test_embed_reports_progress():
    stack = np.random.default_rng(2).random((100, 8, 8)).astype(np.float32)
    seen = []
    tm.embed(stack, perplexity=10, progress=seen.append)
    assert seen[-1].done == seen[-1].total and any("t-SNE" in p.message for p in seen)


def test_reference_scores_out_of_distribution(sinograms):
    stack, theta, kinds = sinograms
    clean = np.flatnonzero(kinds == "")
    reference = stack[clean[:300]]
    new = np.concatenate([stack[clean[300:340]], stack[kinds != ""]])
    is_bad = np.r_[np.zeros(40, bool), np.ones(10, bool)]
    scores = tm.outlier_scores(new, features="sinogram", reference=reference)
    assert 0.5 < np.median(scores[~is_bad]) < 2.0  # about 1 inside the reference
    assert _in_top(scores, np.where(is_bad, "bad", ""), top=12) >= 9
    # a fitted reference stored as JSON (e.g. in a model card) scores the same
    ref = embed.fit_reference(reference, features="sinogram")
    again = embed.Reference.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert np.allclose(again.score(new), scores)


def test_reference_with_pixels_keeps_the_reference_pca():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 16, 16)).astype(np.float32)
    new = rng.normal(size=(20, 16, 16)).astype(np.float32)
    new[:5] += np.outer(np.hanning(16), np.hanning(16)) * 4  # a bright blob the reference never had
    scores = tm.outlier_scores(new, features="pixels", reference=reference)
    assert scores[:5].min() > scores[5:].max()


def test_model_encoder_features(tmp_path):
    torch = pytest.importorskip("torch")
    from napari_tomoml.models.store import save_model
    from napari_tomoml.models.tomogan import TomoGAN

    torch.manual_seed(0)
    path = save_model(TomoGAN(depth=3), tmp_path / "tg")
    stack = tm.sim.make_phantom("foam", 32, 40, seed=1)
    stack[[5, 17]] = np.random.default_rng(0).random((2, 32, 32)) * stack.max()  # noise, not foam
    table = run_to_end(_features.feature_steps(stack, f"model:{path}"))
    assert table.values.shape == (40, 2 * 128)  # mean and spread of the 128 bottleneck channels
    scores = tm.outlier_scores(stack, features=f"model:{path}")
    assert set(np.argsort(-scores)[:2]) == {5, 17}


def test_model_features_in_chunks_equal_one_pass(monkeypatch, tmp_path):
    """Later chunks stop at the bottleneck (the decoder is skipped): same values as a full pass."""
    torch = pytest.importorskip("torch")
    from napari_tomoml.models.store import ARCHITECTURES, save_model
    from napari_tomoml.models.tomogan import TomoGAN

    torch.manual_seed(0)
    models = [save_model(TomoGAN(depth=1), tmp_path / "tg")]
    if "unet" in ARCHITECTURES:  # any U-Net the store knows works the same way
        models.append(save_model(ARCHITECTURES["unet"](), tmp_path / "unet"))
    stack = np.random.default_rng(0).random((9, 24, 24)).astype(np.float32)
    for path in models:
        whole = run_to_end(_features.feature_steps(stack, f"model:{path}"))
        monkeypatch.setattr(_features, "CHUNK_BYTES", 64 * 2 * 4 * 24 * 24)  # 2 items a chunk
        chunked = run_to_end(_features.feature_steps(stack, f"model:{path}"))
        monkeypatch.undo()
        assert np.allclose(whole.values, chunked.values, rtol=1e-4, atol=1e-6), path


# ---------------------------------------------------------------------------- bad input
def test_too_few_items_for_the_perplexity():
    stack = np.zeros((50, 8, 8), np.float32)
    with pytest.raises(InputError, match=r"perplexity 30 needs more than 90 items.*has 50"):
        tm.embed(stack)


def test_nan_items_are_named():
    stack = np.random.default_rng(0).random((120, 8, 8)).astype(np.float32)
    stack[[4, 77], 2, 3] = np.nan
    with pytest.raises(InputError, match=r"item\(s\) 4, 77 contain NaN"):
        tm.outlier_scores(stack)
    with pytest.raises(InputError, match="NaN"):
        tm.embed(stack, method="pca")


def test_items_of_different_shapes():
    items = [np.zeros((8, 8))] * 5 + [np.zeros((8, 9))]
    with pytest.raises(InputError, match=r"item 5 has shape \(8, 9\) but item 0 has \(8, 8\)"):
        tm.outlier_scores(items)


def test_reference_of_another_item_shape():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=r"reference items are \(16, 16\) but the stack's are \(8, 8\)"):
        tm.outlier_scores(rng.random((20, 8, 8)), reference=rng.random((20, 16, 16)))


def test_not_a_stack_and_unknown_options():
    with pytest.raises(InputError, match=r"\(N, h, w\)"):
        tm.outlier_scores(np.zeros((8, 8)))
    stack = np.random.default_rng(0).random((100, 8, 8))
    with pytest.raises(InputError, match="method='tsen' is unknown"):
        tm.embed(stack, method="tsen")
    with pytest.raises(InputError, match="features='pixel' is unknown"):
        tm.outlier_scores(stack, features="pixel")
    with pytest.raises(InputError, match="theta has 5 angles but the sinograms have 8"):
        tm.outlier_scores(stack, features="sinogram", theta=np.zeros(5))


def test_umap_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    with pytest.raises(InputError, match="umap-learn"):
        tm.embed(np.random.default_rng(0).random((20, 8, 8)), method="umap")


def test_outlier_table_and_csv(tmp_path, sinograms):
    stack, theta, kinds = sinograms
    steps = embed.outlier_table_steps(stack[:100], features="sinogram", method="pca", theta=theta)
    columns = run_to_end(steps)
    assert list(columns)[:5] == ["item", "x", "y", "score", "lof"]
    assert "center_offset" in columns and all(len(v) == 100 for v in columns.values())
    out = embed.write_table_csv(columns, tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text().splitlines()
    assert text[0].startswith("item,x,y,score,lof") and len(text) == 101
    with pytest.raises(FileExistsError):
        embed.write_table_csv(columns, out)


def test_cli_outliers(tmp_path, sinograms, capsys):
    from napari_tomoml import cli

    stack, theta, kinds = sinograms
    np.save(tmp_path / "sinos.npy", stack[:200])
    np.save(tmp_path / "ref.npy", stack[200:][kinds[200:] == ""])
    out = tmp_path / "table.csv"
    assert cli.main(["outliers", str(tmp_path / "sinos.npy"), "--out", str(out), "--features", "sinogram",
                     "--method", "pca", "-q"]) == 0
    header, *rows = out.read_text().splitlines()
    assert header.startswith("item,x,y,score,lof,") and len(rows) == 200
    top = [int(i.split()[0]) for i in capsys.readouterr().out.split(": ", 1)[1].split(", ")]
    assert len(top) == 10  # the summary names the ten most unusual
    assert len(set(top) & set(np.flatnonzero(kinds[:200] != ""))) >= 3  # 4 corrupted among the 200
    # against a reference; the table is never written over without --overwrite
    assert cli.main(["outliers", str(tmp_path / "sinos.npy"), "--out", str(out), "--reference",
                     str(tmp_path / "ref.npy"), "--features", "sinogram", "--method", "none", "-q"]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["outliers", str(tmp_path / "sinos.npy"), "--out", str(out), "--reference",
                     str(tmp_path / "ref.npy"), "--features", "sinogram", "--method", "none", "-q",
                     "--overwrite"]) == 0
    assert out.read_text().startswith("item,score,lof,")
    assert cli.main(["outliers", str(tmp_path / "sinos.npy"), "--out", str(tmp_path / "sinos.npy"), "-q",
                     "--overwrite"]) == 2  # never over the input


def test_a_model_that_cannot_take_the_items_is_one_clear_error(tmp_path, monkeypatch):
    from napari_tomoml.errors import ModelFileError
    from napari_tomoml.models.store import save_model
    from napari_tomoml.models.tomogan import TomoGAN

    path = save_model(TomoGAN(depth=1), tmp_path / "tg")

    def refuse(self, x):  # what torch raises when a layer does not fit the input
        raise RuntimeError("Given groups=1, weight of size [8, 1, 1, 1], expected input[2, 3, 5, 5]\nmore")

    monkeypatch.setattr(TomoGAN, "forward", refuse)
    with pytest.raises(ModelFileError, match=r"cannot take items of shape \(5, 5\): Given groups=1.*5, 5\]$"):
        tm.outlier_scores(np.random.default_rng(0).random((10, 5, 5)), features=f"model:{path}")
