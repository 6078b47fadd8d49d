"""
Batch over a folder of scans
============================

A night shift's folder of scans, one of them truncated: reconstruct every scan with
``tm.batch`` (failures are listed, the rest done), run it again (finished scans are skipped),
denoise the reconstructions in a second batch, and open the results in the viewer. The same
from a shell: ``tomoml batch reconstruct NIGHT RECON``. Set ``TOMOML_EXAMPLE_FOLDER`` to a
folder of your own scans to run it on them.

.. tags:: batch
"""

import os
import tempfile
from pathlib import Path

import napari
import numpy as np

import napari_tomoml as tm


def night_shift() -> Path:
    """A folder of small simulated scans (one truncated), unless one is given."""
    if os.environ.get("TOMOML_EXAMPLE_FOLDER"):
        return Path(os.environ["TOMOML_EXAMPLE_FOLDER"])
    from napari_tomoml._sample_data import phantom_scan
    from napari_tomoml.io.writers import write_hdf5

    folder = Path(tempfile.mkdtemp()) / "night"
    sim = phantom_scan(size=48, slices=3, n_angles=60)
    rng = np.random.default_rng(0)
    for i in range(3):
        counts = rng.poisson(500 * np.exp(-sim["clean"] * (1 + 0.2 * i))).astype(np.float32)
        flats = np.full((2,) + counts.shape[1:], 500, np.float32)
        write_hdf5(folder / f"scan_{i}.h5", tm.Scan(counts, sim["theta"], flats, np.zeros_like(flats)))
    whole = (folder / "scan_2.h5").read_bytes()
    (folder / "scan_2.h5").write_bytes(whole[: len(whole) // 2])  # the scan that was cut short
    return folder


night = night_shift()
recon, clean = night.parent / "recon", night.parent / "clean"
summary = tm.batch("reconstruct", night, recon, options={"center": "auto", "device": "cpu"})
print(summary.counts(), *(f"{Path(r['input']).name}: {r['error']}" for r in summary.failed), sep="\n")
print("again:", tm.batch("reconstruct", night, recon).counts())  # finished scans are skipped
denoised = tm.batch("denoise", recon, clean, options={"device": "cpu"})

viewer = napari.Viewer()
for row in denoised:
    if row["status"] in ("ok", "skipped"):
        viewer.add_image(tm.read_volume(row["output"]).data, name=Path(row["output"]).stem)

if __name__ == "__main__":
    napari.run()
