import numpy as np
import pytest

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.progress import run_to_end
from napari_tomoml.recon import project
from napari_tomoml.sim.phantom import shepp_logan_3d
from napari_tomoml.tasks.reconstruct import reconstruct, reconstruct_steps

N, ROWS = 32, 5


@pytest.fixture(scope="module")
def scan():
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    vol = shepp_logan_3d(N, ROWS)
    return vol, theta, project(vol, theta, center=N / 2 + 1.5, device="cpu")


@pytest.mark.parametrize("algorithm", ["fbp", "sirt", "cgls", "tv"])
def test_each_algorithm_gives_a_volume_with_provenance(scan, algorithm):
    vol, theta, proj = scan
    volume, meta = reconstruct(
        proj,
        theta,
        algorithm=algorithm,
        center=N / 2 + 1.5,
        n_iter=20,
        rows=(1, 4),
        device="cpu",
        chunk_rows=2,
    )
    assert volume.shape == (3, N, N) and volume.dtype == np.float32
    assert np.sqrt(np.mean((volume - vol[1:4]) ** 2)) < 0.15
    assert meta["task"] == "reconstruct" and meta["algorithm"] == algorithm
    assert meta["center"] == N / 2 + 1.5 and meta["parameters"]["rows"] == [1, 4]
    assert meta["theta_range_deg"] == pytest.approx([0.0, 177.0]) and meta["version"] == tm.__version__


def test_progress_is_reported_per_batch_and_can_stop_early(scan):
    _, theta, proj = scan
    seen = []
    run_to_end(
        reconstruct_steps(proj, theta, algorithm="sirt", n_iter=4, device="cpu", chunk_rows=2), seen.append
    )
    assert [p.done for p in seen] == list(range(1, 13)) and seen[-1].total == 12
    steps = reconstruct_steps(proj, theta, algorithm="sirt", n_iter=1000, device="cpu")
    next(steps)
    steps.close()  # what a cancelled worker does: no error, nothing left running


def test_public_name(scan):
    _, theta, proj = scan
    volume, _ = tm.reconstruct(proj[:, :1], theta, device="cpu")
    assert volume.shape == (1, N, N)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"theta": np.linspace(0, np.pi, 59)}, "theta has 59 angles"),
        ({"center": -3.0}, "outside the detector"),
        ({"center": N + 5.0}, "outside the detector"),
        ({"projections": np.zeros((60, 2, 3, N))}, "4-D"),
        ({"projections": np.zeros(60)}, "1-D"),
        ({"projections": np.zeros((60, 0, N))}, "empty"),
        ({"projections": np.full((60, 2, N), np.nan)}, "entirely NaN"),
        ({"algorithm": "art"}, "unknown algorithm"),
        ({"filter_name": "box"}, "unknown filter"),
        ({"rows": (4, 2)}, "rows="),
        ({"algorithm": "sirt", "backend": "astra"}, "only does FBP"),
    ],
)
def test_bad_input_is_an_input_error(scan, change, message):
    _, theta, proj = scan
    args = {"projections": proj, "theta": theta, **change}
    with pytest.raises(InputError, match=message):
        reconstruct(args.pop("projections"), args.pop("theta"), device="cpu", **args)


def test_partial_nan_is_reported_with_a_count(scan):
    _, theta, proj = scan
    bad = proj.copy()
    bad[3, 1, 5] = np.nan
    with pytest.raises(InputError, match="1 NaN"):
        reconstruct(bad, theta, device="cpu")


def test_interactive_steps_work_on_raw_counts(scan):
    """The widget's workers: raw counts normalised on the way, centre found, preview matches FBP."""
    from napari_tomoml.tasks.reconstruct import (
        center_check_steps,
        find_center_steps,
        preview_slice,
        reconstruct_raw_steps,
    )

    _, theta, proj = scan
    flat = np.full((1,) + proj.shape[1:], 1000.0, np.float32)
    dark = np.full_like(flat, 10.0)
    raw = dark + (flat - dark) * np.exp(-proj)
    meta = {"flats": flat, "darks": dark}

    center = run_to_end(find_center_steps(raw, 2, theta, meta, True))
    assert center == pytest.approx(N / 2 + 1.5, abs=0.25)
    preview = preview_slice(raw, 2, theta, center, "ramp", meta, True)
    expected = tm.fbp(proj[:, 2:3], theta, center=center, device="cpu")[0]
    np.testing.assert_allclose(preview, expected, atol=1e-3 * float(np.abs(expected).max()))
    stack, centers = run_to_end(center_check_steps(raw, 2, theta, [center - 2, center], "ramp", meta, True))
    assert stack.shape == (2, N, N) and list(centers) == [center - 2, center]
    volume, info = run_to_end(
        reconstruct_raw_steps(raw, slice(1, 3), theta, meta, True, {"algorithm": "fbp", "center": center, "device": "cpu"})
    )
    assert volume.shape == (2, N, N) and info["algorithm"] == "fbp"


# ---------------------------------------------------------------------------- bounded memory
class RowReads:
    """A lazy projection stack that records how many detector rows each read asks for."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.rows_read: list[int] = []

    def __getitem__(self, key):
        out = self.data[key]
        self.rows_read.append(out.shape[1] if out.ndim == 3 else 1)
        return out


@pytest.fixture(scope="module")
def raw_scan(scan):
    vol, theta, proj = scan
    flats = np.full((3, ROWS, N), 1000.0, np.float32)
    darks = np.full((2, ROWS, N), 10.0, np.float32)
    counts = (darks[0] + (flats[0] - darks[0]) * np.exp(-0.5 * proj)).astype(np.float32)
    return theta, counts, flats, darks


def test_slab_by_slab_equals_the_whole_scan_at_once(raw_scan, monkeypatch):
    import napari_tomoml.tasks.reconstruct as task

    theta, counts, flats, darks = raw_scan
    plain, _ = reconstruct(tm.normalize(counts, flats, darks), theta, center=N / 2 + 1.5, device="cpu")
    monkeypatch.setattr(task, "slab_rows", lambda *args: 2)
    lazy = RowReads(counts)
    opened = []

    def out(shape, meta):
        opened.append((shape, meta))
        return np.full(shape, np.nan, np.float32)

    volume, meta = run_to_end(task.reconstruct_scan_steps(
        lazy, theta, out, metadata={"flats": flats, "darks": darks}, center=N / 2 + 1.5, device="cpu"))
    assert max(lazy.rows_read) == 2  # never more than a slab of the scan in memory
    assert len(opened) == 1 and opened[0][0] == (ROWS, N, N) and meta["parameters"]["slab_rows"] == 2
    np.testing.assert_allclose(volume, plain, rtol=1e-5, atol=1e-6)


def test_slabs_with_auto_centre_rows_and_an_iterative_method(raw_scan, monkeypatch):
    import napari_tomoml.tasks.reconstruct as task

    theta, counts, flats, darks = raw_scan
    monkeypatch.setattr(task, "slab_rows", lambda *args: 2)
    volume, meta = run_to_end(task.reconstruct_scan_steps(
        counts, theta, metadata={"flats": flats, "darks": darks}, rows=(1, 4), center="auto",
        algorithm="sirt", n_iter=5, device="cpu"))
    assert volume.shape == (3, N, N) and meta["parameters"]["rows"] == [1, 4]
    assert meta["center"] == pytest.approx(N / 2 + 1.5, abs=0.5)
    direct, _ = reconstruct(tm.normalize(counts, flats, darks), theta, algorithm="sirt", n_iter=5, rows=(1, 4),
                            center=meta["center"], device="cpu", chunk_rows=2)
    np.testing.assert_allclose(volume, direct, rtol=1e-4, atol=1e-5)


def test_a_memory_limit_below_one_row_is_refused():
    from napari_tomoml.tasks.reconstruct import parse_memory, slab_rows

    with pytest.raises(InputError, match="too small"):
        slab_rows(720, 1024, 1024, 2, parse_memory("10MiB"), 768)
    assert slab_rows(10, 16, 16, 4, parse_memory("64GiB"), 7) == 7
    with pytest.raises(InputError, match="give a size like"):
        parse_memory("lots")
