"""Live mode: sources (simulated detector, folder, pvAccess loopback), batching, stitching, counters, hot swap."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import napari_tomoml as tm
from napari_tomoml.errors import InputError
from napari_tomoml.models.ptychonn import PtychoNN
from napari_tomoml.progress import run_to_end
from napari_tomoml.ptycho import sim
from napari_tomoml.ptycho.live import FolderSource, FrameBuffer, LiveEngine, SimulatedDetector, run_live


@pytest.fixture(scope="module")
def scan():
    obj = sim.random_object((64, 64), seed=2)
    probe = sim.focused_probe(16, aperture=0.3, defocus=0.6, photons=1e4)
    pos = sim.raster_scan(obj.shape, 16, sim.probe_diameter(probe), overlap=0.6)
    return sim.simulate(obj, probe, pos, photons=1e4), pos


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = PtychoNN(nconv=4).eval()
    net.input_scale.fill_(0.1)
    return net


def _reference(patterns, positions, model):
    _, ph = tm.ptycho.predict(patterns, model=model, device="cpu")
    return tm.ptycho.stitch(ph, positions, (64, 64))


def test_live_equals_offline_predict_and_stitch(scan, model):
    patterns, pos = scan
    result = run_live(SimulatedDetector(patterns, pos, rate=None), model, batch=8, device="cpu", canvas=(64, 64))
    np.testing.assert_allclose(result.phase, _reference(patterns, pos, model), atol=1e-5)
    c = result.counters
    assert c["received"] == c["inferred"] == len(patterns)
    assert c["buffered"] == 0 and c["dropped"] == 0 and c["lost"] == 0
    assert result.amplitude.shape == (64, 64)


def test_detector_rate_is_kept_and_progress_reports_counters(scan, model):
    patterns, pos = scan
    engine = LiveEngine(SimulatedDetector(patterns, pos, rate=200.0), model, batch=16, device="cpu")
    updates = []
    result = run_to_end(engine.steps(update_every=0.05), updates.append)
    elapsed = result.counters["elapsed_s"]
    assert (len(patterns) - 1) / 200.0 * 0.9 <= elapsed < (len(patterns) - 1) / 200.0 + 2.0
    assert len(updates) >= 2 and {"received", "inferred", "buffered", "dropped", "rate"} <= set(updates[0].data["counters"])
    grow = [u.data["counters"]["inferred"] for u in updates]
    assert grow == sorted(grow) and grow[-1] == len(patterns)
    assert updates[-1].data["phase"].ndim == 2


def test_slow_consumer_buffers_then_drops_oldest_when_bounded(scan, model):
    patterns, pos = scan
    buf = FrameBuffer(max_frames=5)
    det = SimulatedDetector(patterns, pos, rate=None)
    det.start(buf.put)
    det._thread.join()
    assert buf.received == len(patterns) and buf.dropped == len(patterns) - 5 and len(buf) == 5
    # unbounded (default): everything that arrived while the network was busy is kept and inferred
    result = run_live(SimulatedDetector(patterns, pos, rate=None), model, batch=4, device="cpu")
    assert result.counters["dropped"] == 0 and result.counters["inferred"] == len(patterns)


def test_folder_source_reads_files_as_they_are_written(tmp_path, scan, model):
    patterns, pos = scan

    def writer():
        for i in range(0, len(patterns), 10):
            tmp = tmp_path / f".part{i}.npz"
            np.savez(tmp, patterns=patterns[i : i + 10], positions=pos[i : i + 10])
            tmp.rename(tmp_path / f"frames_{i:05d}.npz")  # written under another name, then renamed
            time.sleep(0.02)
        (tmp_path / "junk_notes.txt").write_text("ignored")
        (tmp_path / "scan.done").touch()

    thread = threading.Thread(target=writer)
    thread.start()
    result = run_live(FolderSource(tmp_path), model, batch=8, device="cpu", canvas=(64, 64))
    thread.join()
    assert result.counters["inferred"] == len(patterns)
    np.testing.assert_allclose(result.phase, _reference(patterns, pos, model), atol=1e-5)


def test_pvaccess_loopback(scan, model):
    pytest.importorskip("p4p")
    from napari_tomoml.ptycho.live import PvaDetectorServer, PvaSource

    patterns, pos = scan
    conf = {"EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_PVAS_BROADCAST_PORT": "0", "EPICS_PVAS_SERVER_PORT": "0"}
    with PvaDetectorServer("TOMOML:TEST:PTYCHO", patterns.shape[1:], conf=conf) as server:
        source = PvaSource("TOMOML:TEST:PTYCHO", frames=len(patterns), conf=server.conf, timeout=20)
        engine = LiveEngine(source, model, batch=8, device="cpu", canvas=(64, 64))
        steps = engine.steps(update_every=0.05)
        next(steps)  # subscribed and running
        time.sleep(0.5)
        for p, xy in zip(patterns, pos):
            server.publish(p, xy)
            time.sleep(0.002)
        result = run_to_end(steps)
    assert result.counters["inferred"] + result.counters["lost"] == len(patterns)
    assert result.counters["lost"] == 0
    np.testing.assert_allclose(result.phase, _reference(patterns, pos, model), atol=1e-5)


def test_hot_swap_changes_the_model_between_batches(scan, model):
    patterns, pos = scan
    torch.manual_seed(5)
    other = PtychoNN(nconv=4).eval()
    other.input_scale.fill_(0.1)
    engine = LiveEngine(SimulatedDetector(patterns, pos, rate=None), model, batch=len(patterns), device="cpu",
                        canvas=(64, 64))
    engine.swap_model(other)  # before the first batch: every frame goes through ``other``
    result = run_to_end(engine.steps())
    assert engine.swaps == 1
    np.testing.assert_allclose(result.phase, _reference(patterns, pos, other), atol=1e-5)


def test_cancel_stops_the_source(scan, model):
    patterns, pos = scan
    det = SimulatedDetector(patterns, pos, rate=50.0, repeat=100)
    steps = LiveEngine(det, model, device="cpu").steps(update_every=0.01)
    next(steps)
    steps.close()
    assert det.finished or not det._thread.is_alive()
    assert det._stop.is_set()


def test_bad_live_frames_are_clear_errors(scan, model):
    patterns, pos = scan
    with pytest.raises(InputError, match="match one to one"):
        SimulatedDetector(patterns, pos[:-1])
    bad = patterns.copy()
    bad[3, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        SimulatedDetector(bad, pos)
    with pytest.raises(InputError, match="positive"):
        SimulatedDetector(patterns, pos, rate=0)
