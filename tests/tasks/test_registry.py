"""The task registry: declarations checked, turned into CLI options, and every task run on tiny data."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch

from napari_tomoml.errors import InputError
from napari_tomoml.io.scan import Scan
from napari_tomoml.io.volume import read_volume
from napari_tomoml.io.writers import write_hdf5
from napari_tomoml.progress import Progress, run_to_end
from napari_tomoml.tasks.registry import Param, get_task, task_names


def test_param_converts_and_names_the_problem():
    p = Param("n_iter", int, 100, "iterations", minimum=1)
    assert p.check("7") == 7 and p.check(3.0) == 3
    with pytest.raises(InputError, match="n_iter=2.5: expected int"):
        p.check(2.5)
    with pytest.raises(InputError, match="must be at least 1"):
        p.check(0)
    choice = Param("algorithm", str, "fbp", "", choices=("fbp", "sirt"))
    with pytest.raises(InputError, match="choose one of fbp, sirt"):
        choice.check("magic")
    flag = Param("flag", bool, False, "")
    assert flag.check("yes") is True and flag.check("false") is False
    assert Param("tile", int, None, "", optional=True).check("") is None


def test_every_task_declares_usable_defaults():
    assert {"reconstruct", "denoise"} <= set(task_names())
    for name in task_names():
        spec = get_task(name)
        assert spec.help and spec.input_kind in ("scan", "volume")
        resolved = spec.resolve({})
        assert set(resolved) == set(spec.names())
        assert spec.output_suffix(resolved).startswith(".")


def test_filter_choices_are_the_reconstructors_and_listing_tasks_needs_no_torch():
    import subprocess
    import sys

    from napari_tomoml.recon.filters import FILTERS
    from napari_tomoml.tasks.registry import FBP_FILTERS

    assert FBP_FILTERS == FILTERS
    code = "import sys, napari_tomoml.tasks.batch as b; print(b.get_task('reconstruct').name, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["reconstruct", "False"], out.stderr


def test_unknown_task_and_option_list_what_exists():
    with pytest.raises(InputError, match="unknown task 'nope': choose one of reconstruct, denoise"):
        get_task("nope")
    with pytest.raises(InputError, match="no option 'iterations'; its options are algorithm, center"):
        get_task("reconstruct").resolve({"iterations": 5})


def test_argparse_options_come_from_the_declaration():
    spec = get_task("reconstruct")
    parser = argparse.ArgumentParser()
    spec.add_arguments(parser)
    args = parser.parse_args(["--algorithm", "sirt", "--n-iter", "20", "--line-integrals", "--format", "h5"])
    options = spec.resolve(spec.options_from_args(args))
    assert options == {**spec.defaults(), "algorithm": "sirt", "n_iter": 20, "line_integrals": True, "format": "h5"}
    assert spec.resolve(spec.options_from_args(parser.parse_args([]))) == spec.defaults()


# ------------------------------------------------------------------------------ every task, tiny data
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("registry")
    rng = np.random.default_rng(0)
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    image = np.zeros((3, 32, 32), np.float32)
    image[:, 8:24, 10:20] = 1
    from napari_tomoml.recon import project

    sino = np.asarray(project(image, theta, device="cpu"))  # (angles, rows, cols) line integrals
    counts = (1000 * np.exp(-0.05 * sino)).astype(np.float32)
    write_hdf5(folder / "scan.h5", Scan(counts, theta, np.full((2,) + counts.shape[1:], 1000, np.float32),
                                         np.zeros((2,) + counts.shape[1:], np.float32)))
    np.save(folder / "volume.npy", (image + 0.1 * rng.standard_normal(image.shape)).astype(np.float32))
    np.save(folder / "stack.npy", rng.random((16, 12, 12)).astype(np.float32))
    return folder


def _run(name, source, output, **options):
    spec = get_task(name)
    steps = spec.run(source, output, spec.resolve({"device": "cpu", **options} if "device" in spec.names()
                                                  else options))
    seen = []
    meta = run_to_end(steps, seen.append)
    assert seen and all(isinstance(p, Progress) for p in seen)  # cancellable: it yields
    assert output.exists()
    return meta


def test_reconstruct_matches_the_plain_function(files, tmp_path):
    import napari_tomoml as tm

    _run("reconstruct", files / "scan.h5", tmp_path / "r.npy", center="15.5")
    scan = tm.load_scan(files / "scan.h5")
    plain, _ = tm.reconstruct(tm.normalize(scan), scan.theta, center=15.5, device="cpu")
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), plain, atol=1e-5)
    assert read_volume(tmp_path / "r.npy").shape == plain.shape


def test_denoise_matches_the_plain_function(files, tmp_path):
    import napari_tomoml as tm

    _run("denoise", files / "volume.npy", tmp_path / "d.tif", format="tif")
    plain = tm.denoise(np.load(files / "volume.npy"), device="cpu")
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "d.tif")), plain)


def test_segment_runs_a_model_file(files, tmp_path):
    if "segment" not in task_names():
        pytest.skip("no segment task in this checkout")
    from napari_tomoml.models.unet import UNet
    from napari_tomoml.tasks.segment import save_model

    torch.manual_seed(0)
    model = save_model(UNet(classes=2, depth=1, width=4), tmp_path / "unet")
    _run("segment", files / "volume.npy", tmp_path / "labels.npy", model=str(model))
    labels = np.load(tmp_path / "labels.npy")
    assert labels.shape == (3, 32, 32) and set(np.unique(labels)) <= {0, 1}


def test_align_writes_a_shift_table(files, tmp_path):
    if "align" not in task_names():
        pytest.skip("no align task in this checkout")
    _run("align", files / "scan.h5", tmp_path / "shifts.csv", method="xcorr")
    rows = list(csv.DictReader(open(tmp_path / "shifts.csv")))
    assert len(rows) == 30 and set(rows[0]) == {"angle_deg", "dy", "dx"}
    assert max(abs(float(r["dx"])) for r in rows) < 1  # an aligned scan: no shifts to find


def test_outliers_writes_a_score_table(files, tmp_path):
    if "outliers" not in task_names():
        pytest.skip("no outliers task in this checkout")
    meta = _run("outliers", files / "stack.npy", tmp_path / "scores.csv", method="pca")  # t-SNE needs > 90 items
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert meta["items"] == len(rows) == 16 and "score" in rows[0]


def test_a_large_npy_is_denoised_slice_by_slice(files, tmp_path, monkeypatch):
    """A memory-mapped .npy above the lazy threshold is read one slice at a time (as a dask array),
    NaN is reported by slice, and the result is the in-memory one."""
    import napari_tomoml as tm
    from napari_tomoml.io import _common
    from napari_tomoml.tasks.registry import lazy_volume

    monkeypatch.setattr(_common, "LAZY_THRESHOLD_BYTES", 0)  # every file counts as large
    mapped = np.load(files / "volume.npy", mmap_mode="r")
    assert not isinstance(lazy_volume(mapped), np.ndarray) and type(lazy_volume(np.array(mapped))) is np.ndarray
    _run("denoise", files / "volume.npy", tmp_path / "d.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), tm.denoise(np.load(files / "volume.npy"), device="cpu"))
    bad = np.load(files / "volume.npy")
    bad[2, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(InputError, match="slice z=2 contains NaN"):
        _run("denoise", tmp_path / "nan.npy", tmp_path / "n.npy")
