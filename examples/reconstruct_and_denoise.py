"""
Reconstruct and denoise a scan
==============================

Load a raw scan (projections, flats, darks, angles), normalise it, find the rotation centre,
reconstruct with FBP and denoise the low-dose reconstruction with the bundled TomoGAN; show
each step as a layer. Uses the real tooth scan of ``../shared/data`` when it is there (or the
file named by ``TOMOML_EXAMPLE_SCAN``), else a simulated low-dose phantom written to a
temporary DXchange file.

.. tags:: reconstruction, denoising
"""

import os
import tempfile
from pathlib import Path

import napari
import numpy as np

import napari_tomoml as tm


def example_scan() -> Path:
    """A raw scan file: the given or shared real one, else a simulated low-dose phantom."""
    given = os.environ.get("TOMOML_EXAMPLE_SCAN")
    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "tooth.h5"
    if given:
        return Path(given)
    if shared.exists():
        return shared
    from napari_tomoml._sample_data import phantom_scan
    from napari_tomoml.io.writers import write_hdf5

    sim = phantom_scan(size=64, slices=4, n_angles=90)
    i0 = 200.0  # photons per pixel: low dose
    counts = (i0 * np.exp(-sim["low"])).astype(np.float32)
    flats = np.full((2,) + counts.shape[1:], i0, np.float32)
    path = Path(tempfile.mkdtemp()) / "phantom_lowdose.h5"
    return write_hdf5(path, tm.Scan(counts, sim["theta"], flats, np.zeros_like(flats)))


scan = tm.load_scan(example_scan())
projections = tm.normalize(scan)  # flat/dark correction and -log: line integrals
center = tm.find_center(projections, scan.theta)
volume = tm.fbp(projections, scan.theta, center=center)
clean = tm.denoise(volume, model="tomogan-lowdose", device="cpu")

viewer = napari.Viewer()
viewer.add_image(np.asarray(projections), name="projections", visible=False)
viewer.add_image(volume, name=f"FBP (centre {center:.1f} px)", colormap="gray")
viewer.add_image(clean, name="TomoGAN", colormap="gray")

if __name__ == "__main__":
    napari.run()
