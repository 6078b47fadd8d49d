"""FBP speed and accuracy: napari-tomoml's torch engine vs ASTRA (2-D CPU) vs scikit-image iradon.

Run by hand (never in CI): ``python benchmarks/bench_fbp.py [--quick] [--preview]``.

Every engine reconstructs the same Shepp–Logan slices from *analytic* projections (exact line
integrals of the ellipses, so no engine reconstructs its own projector's data) with the ramp
filter, and is scored by the RMSE against the phantom sampled on that engine's own pixel grid
(scikit-image centres its grid half a pixel away from tomopy's and ASTRA's at even sizes; see
``napari_tomoml.recon.geometry``). Times are wall-clock per slice, everything included (filter,
matrix build, back-projection); our engine gets all slices of a run in one call, as
``napari_tomoml.fbp`` does with a volume, the others loop over slices as they must.

``--preview`` times instead what the reconstruct widget's live preview does: one slice at a new
rotation centre per call (no cached matrices: the direct back-projector), on the real tooth scan
of ``shared/data`` where present and on the synthetic cases.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_tomoml.recon import fbp
from napari_tomoml.recon.fbp import circle_mask
from napari_tomoml.recon.geometry import clear_cache
from napari_tomoml.sim.phantom import _SHEPP_LOGAN

# (image / detector size, angles, slices for us, slices for ASTRA, slices for iradon)
CASES = [(512, 720, 32, 4, 2), (1024, 1500, 16, 2, 1)]
QUICK = [(256, 360, 8, 2, 1)]


def _ellipses_at(z: float):
    """The 2-D ellipses of the 3-D modified Shepp–Logan phantom cut at height z (in [-1, 1])."""
    for value, a, b, c, x0, y0, z0, phi in _SHEPP_LOGAN:
        shrink = 1.0 - ((z - z0) / c) ** 2
        if shrink > 0:
            yield value, a * np.sqrt(shrink), b * np.sqrt(shrink), x0, y0, np.radians(phi)


def phantom_slice(n: int, z: float, offset: float) -> np.ndarray:
    """The slice sampled at pixel centres ``i + offset - n/2`` (tomopy/ours: offset 0.5, skimage: 0)."""
    coord = (np.arange(n) + offset - n / 2) / (n / 2)
    x, y = coord[None, :], -coord[:, None]
    img = np.zeros((n, n))
    for value, a, b, x0, y0, phi in _ellipses_at(z):
        xr = (x - x0) * np.cos(phi) + (y - y0) * np.sin(phi)
        yr = -(x - x0) * np.sin(phi) + (y - y0) * np.cos(phi)
        img += value * ((xr / a) ** 2 + (yr / b) ** 2 <= 1)
    return img.astype(np.float32)


def analytic_sinogram(n: int, theta: np.ndarray, z: float, offset: float) -> np.ndarray:
    """Exact line integrals (pixel units) at detector positions ``j + offset - n/2``, ``(angles, n)``."""
    t = ((np.arange(n) + offset - n / 2) / (n / 2))[None, :]
    th = theta[:, None]
    sino = np.zeros((len(theta), n))
    for value, a, b, x0, y0, phi in _ellipses_at(z):
        s2 = (a * np.cos(th - phi)) ** 2 + (b * np.sin(th - phi)) ** 2
        tau = t - x0 * np.cos(th) - y0 * np.sin(th)
        inside = np.clip(s2 - tau**2, 0, None)
        sino += value * 2 * a * b * np.sqrt(inside) / s2
    return (sino * n / 2).astype(np.float32)


def rmse(rec: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sqrt(np.mean((rec - truth)[..., mask] ** 2)))


def run_case(n: int, n_angles: int, n_ours: int, n_astra: int, n_iradon: int) -> dict:
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    heights = np.linspace(-0.1, 0.1, n_ours)
    mask = circle_mask(n)  # every engine scored inside the reconstruction circle
    ours_data = np.stack([analytic_sinogram(n, theta, z, 0.5) for z in heights], axis=1)
    truth = np.stack([phantom_slice(n, z, 0.5) for z in heights])
    result = {}

    clear_cache()
    t0 = time.perf_counter()
    rec = fbp(ours_data, theta, device="cpu", chunk=n_ours)
    result["napari-tomoml (torch)"] = ((time.perf_counter() - t0) / n_ours, rmse(rec, truth, mask))

    try:
        import astra

        if astra.use_cuda():
            print("  (ASTRA sees a GPU; this benchmark uses its CPU FBP all the same)")
        t0 = time.perf_counter()
        rec = fbp(ours_data[:, :n_astra], theta, backend="astra")
        result["ASTRA CPU FBP (linear)"] = (
            (time.perf_counter() - t0) / n_astra,
            rmse(rec, truth[:n_astra], mask),
        )
    except ImportError:
        print("  astra-toolbox is not installed: `pip install astra-toolbox` to compare with it")

    from skimage.transform import iradon

    sk_mask = np.hypot(*(np.mgrid[:n, :n] - n // 2)) <= n / 2 - 1
    errors, t0 = [], time.perf_counter()
    for z in heights[:n_iradon]:
        sino = analytic_sinogram(n, theta, z, 0.0)
        rec = iradon(sino.T, np.degrees(theta), filter_name="ramp", circle=True)
        errors.append(rmse(rec, phantom_slice(n, z, 0.0), sk_mask))
    result["scikit-image iradon"] = ((time.perf_counter() - t0) / n_iradon, float(np.mean(errors)))
    return result


def time_preview(name: str, sino: np.ndarray, theta: np.ndarray, repeats: int = 7) -> None:
    """Median wall time of one-slice FBPs, each at a centre not used before."""
    centers = sino.shape[1] / 2 + np.linspace(-5, 5, repeats + 1) + 0.123
    fbp(sino, theta, center=centers[0], device="cpu")  # first call: imports, worker start
    times = []
    for c in centers[1:]:
        t0 = time.perf_counter()
        fbp(sino, theta, center=c, device="cpu")
        times.append(time.perf_counter() - t0)
    print(f"  {name:40s} median {1000 * np.median(times):7.1f} ms (min {1000 * min(times):.1f})")


def run_preview() -> None:
    print("one slice at a new centre per call (live preview)")
    tooth = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "tooth.h5"
    if tooth.exists():
        import napari_tomoml as tm

        scan = tm.load_scan(tooth)
        proj = np.asarray(tm.normalize(scan), np.float32)
        name = f"tooth.h5, {proj.shape[2]}^2 slice, {proj.shape[0]} angles"
        time_preview(name, proj[:, 0], np.asarray(scan.theta))
    for n, n_angles, *_ in CASES:
        theta = np.linspace(0, np.pi, n_angles, endpoint=False)
        sino = analytic_sinogram(n, theta, 0.0, 0.5)
        time_preview(f"Shepp-Logan, {n}^2 slice, {n_angles} angles", sino, theta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small case, to check the script")
    parser.add_argument("--preview", action="store_true", help="time one-slice FBPs at new centres")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.preview:
        run_preview()
        return
    for case in QUICK if args.quick else CASES:
        n, n_angles = case[:2]
        print(f"\n{n} x {n} slice, {n_angles} angles over 180 degrees")
        result = run_case(*case)
        ours = result["napari-tomoml (torch)"][0]
        for name, (seconds, error) in result.items():
            ratio = "" if name.startswith("napari") else f"   ours is {seconds / ours:5.1f}x faster"
            print(f"  {name:24s} {1000 * seconds:9.1f} ms/slice   RMSE {error:.4f}{ratio}")


if __name__ == "__main__":
    main()
