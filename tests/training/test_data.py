import h5py
import numpy as np
import pytest
import tifffile

from napari_tomoml.errors import InputError, ScanReadError
from napari_tomoml.training.data import PairedVolumes, generate_pairs


def test_pairs_are_normalised_by_the_noisy_volume(rng):
    clean = 100 + 10 * rng.random((3, 24, 24))
    pairs = PairedVolumes.from_arrays(clean + rng.normal(0, 1, clean.shape), clean)
    lo, hi = np.percentile(pairs.noisy[0], [0.5, 99.5])
    assert lo == pytest.approx(0, abs=1e-4) and hi == pytest.approx(1, abs=1e-4)
    assert 0.0 < pairs.clean[0].mean() < 1.0


def test_batches_have_depth_stacks_and_matching_augmentation(rng):
    vol = np.arange(4 * 20 * 20, dtype=np.float32).reshape(4, 20, 20)
    pairs = PairedVolumes.from_arrays(vol, vol, normalization={"kind": "affine", "offset": 0, "scale": 1})
    x, y = pairs.sample_batch(rng, batch=6, crop=8, depth=3)
    assert x.shape == (6, 3, 8, 8) and y.shape == (6, 1, 8, 8)
    np.testing.assert_array_equal(x[:, 1], y[:, 0])  # target is the augmented middle slice
    with pytest.raises(InputError, match="larger than"):
        pairs.sample_batch(rng, batch=1, crop=32, depth=1)


def test_hdf5_in_published_layout(tmp_path, rng):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        for split in ("train", "test"):
            f[f"{split}_ns"] = rng.integers(0, 255, (3, 16, 16)).astype(np.uint8)
            f[f"{split}_gt"] = rng.integers(0, 255, (3, 16, 16)).astype(np.uint8)
    pairs = PairedVolumes.from_hdf5(path, "test")
    assert pairs.n_slices == 3 and pairs.description["source"] == "data.h5:test"
    with pytest.raises(ScanReadError, match="valid_ns"):
        PairedVolumes.from_hdf5(path, "valid")


def test_tiff_folders(tmp_path, rng):
    for name in ("noisy", "clean"):
        (tmp_path / name).mkdir()
        for i in range(2):
            tifffile.imwrite(tmp_path / name / f"s{i:03d}.tif", rng.random((12, 12)).astype(np.float32))
    assert PairedVolumes.from_tiff_folders(tmp_path / "noisy", tmp_path / "clean").noisy[0].shape == (2, 12, 12)
    with pytest.raises(ScanReadError):
        PairedVolumes.from_tiff_folders(tmp_path, tmp_path / "clean")


def test_generated_low_dose_pairs_are_noisier_than_targets():
    pairs = generate_pairs("ellipsoids", n_volumes=1, size=32, nz=2, i0=300, seed=0, device="cpu")
    noisy, clean = pairs.noisy[0], pairs.clean[0]
    assert noisy.shape == clean.shape == (2, 32, 32)
    assert np.abs(np.diff(noisy, axis=-1)).mean() > 1.5 * np.abs(np.diff(clean, axis=-1)).mean()
    assert pairs.description["phantom_family"] == "ellipsoids" and pairs.description["i0_photons_per_pixel"] == 300
