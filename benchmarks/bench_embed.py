"""tm.embed on 10,000 and 100,000 items of 64x64: time and peak memory; outlier ranking by feature kind.

    python benchmarks/bench_embed.py                 # 10k and 100k (writes the 100k stack once, 1.6 GB)
    python benchmarks/bench_embed.py --sizes 10000   # 10k only
    python benchmarks/bench_embed.py --ranking-only  # only the corrupted-sinogram ranking
    python benchmarks/bench_embed.py --widget-only   # only the widget's drawing of 100k points
    (the widget's drawing is timed only with a display: headless, prefix xvfb-run -a)

Every measurement runs in its own process, so its peak resident memory (``ru_maxrss``) is its own;
"after imports" is that process's memory before the work starts. CPU time (user + system of
that process) is given beside the wall time: on a shared, loaded machine it is the fairer figure. The stack is read from an HDF5
file chunk by chunk (as a lazy scan would be), never held whole in memory.

Peers in the same run: scikit-learn's Barnes-Hut t-SNE on the same features (10k only: at 100k it
takes far longer than the target) and ``method="pca"`` (no t-SNE) as the floor of feature
extraction alone.

Threads: OMP_NUM_THREADS (default here 1) caps openTSNE's and scikit-learn's threads.
Ranking: the issue's stack of 500 sinograms with 10 corrupted (each of 5 faults twice); how many
of the 10 rank in the top 20 of ``tm.outlier_scores`` per feature kind, over 5 seeds.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "napari-tomoml" / "bench"


BASE = 10_000


def make_stack(n: int, path: Path) -> Path:
    """``n`` items of 64x64: slices of foam phantoms, 2 % slices of random ellipsoids (another kind).

    Beyond 10,000 items the stack repeats the first 10,000 turned and flipped (8 ways), scaled
    by a few percent and with fresh noise, as slices of several similar samples would be:
    generating 100,000 new phantom slices would take longer than the embedding.
    """
    import h5py

    from napari_tomoml.sim import make_phantom

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    base = None if n <= BASE else make_stack(BASE, path.with_name(f"items-{BASE}-64x64.h5"))
    tmp = path.with_suffix(".tmp")
    block = 2000
    rng = np.random.default_rng(0)
    with h5py.File(tmp, "w") as f:
        data = f.create_dataset("items", (n, 64, 64), dtype="float32", chunks=(256, 64, 64))
        for start in range(0, n, block):
            stop = min(n, start + block)
            if base is None:
                items = make_phantom("foam", 64, stop - start, seed=start)
                other = rng.random(stop - start) < 0.02
                if other.any():
                    items[other] = make_phantom("ellipsoids", 64, int(other.sum()), seed=start + 1)
            else:
                variant, offset = divmod(start, BASE)
                with h5py.File(base, "r") as b:
                    items = b["items"][offset : offset + stop - start]
                items = np.rot90(items, variant % 4, axes=(1, 2))
                items = items[:, ::-1] if variant % 8 >= 4 else items
                items = items * np.float32(1 + 0.03 * (variant // 8))
            data[start:stop] = items + rng.normal(0, 0.02, items.shape).astype(np.float32)
            print(f"  wrote items {stop}/{n}", file=sys.stderr)
    os.replace(tmp, path)
    return path


def _child(job: str, path: str, n: int, queue) -> None:
    import h5py
    import torch

    # torch shares the OpenMP runtime with openTSNE: one thread here would also cap openTSNE's
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import napari_tomoml as tm
    from napari_tomoml.progress import run_to_end
    from napari_tomoml.tasks._features import Scaler, feature_steps

    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with h5py.File(path, "r") as f:
        stack = f["items"]
        assert stack.shape[0] == n
        t0, c0 = time.perf_counter(), time.process_time()
        if job == "tsne":
            xy = tm.embed(stack, method="tsne")
        elif job == "pca":
            xy = tm.embed(stack, method="pca")
        else:  # scikit-learn Barnes-Hut t-SNE on the same features
            from sklearn.manifold import TSNE

            table = run_to_end(feature_steps(stack, "auto"))
            z = Scaler.fit(table).apply(table)
            xy = TSNE(perplexity=30, init="pca", random_state=0, n_jobs=1).fit_transform(z)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": seconds, "cpu_seconds": cpu, "peak_mib": peak, "after_imports_mib": after_imports,
               "finite": bool(np.isfinite(xy).all())})


def measure(job: str, path: Path, n: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(job, str(path), n, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def ranking(seeds=range(5)) -> dict[str, list[int]]:
    import napari_tomoml as tm
    from napari_tomoml.sim.corrupt import corrupted_sinogram_stack

    found: dict[str, list[int]] = {"sinogram": [], "pixels": [], "spectrum": [], "auto": []}
    for seed in seeds:
        stack, theta, kinds = corrupted_sinogram_stack(500, n_corrupt_each=2, seed=seed)
        for kind in found:
            scores = tm.outlier_scores(stack, features=kind, theta=theta)
            top = np.argsort(-scores)[:20]
            found[kind].append(int((kinds[top] != "").sum()))
    return found


def widget_drawing(n: int = 100_000) -> None:
    """Seconds to show, recolour and render a map of ``n`` points in the Outliers widget.

    Needs a display (on a headless machine: ``xvfb-run -a python benchmarks/bench_embed.py``).
    """
    import napari

    from napari_tomoml._widgets.outliers import OutliersWidget

    viewer = napari.Viewer(show=False)
    layer = viewer.add_image(np.zeros((n, 2, 2), np.float32), name="items")
    widget = OutliersWidget(viewer)
    widget.resize(600, 600)
    rng = np.random.default_rng(0)
    columns = {"item": np.arange(n), "x": rng.normal(size=n), "y": rng.normal(size=n),
               "score": rng.random(n), "lof": rng.random(n)}

    def timed(label, func):
        t0 = time.perf_counter()
        func()
        print(f"  {label:42s} {time.perf_counter() - t0:6.2f} s")

    print(f"\nOutliers widget, {n} points:")
    timed("show the table (density mode)", lambda: widget.set_table(columns, layer))
    timed("render a frame, density", lambda: widget.plot.grab())
    timed("switch to points", lambda: widget.density_check.setChecked(False))
    timed("render a frame, points", lambda: widget.plot.grab())
    timed("recolour by lof", lambda: widget.colour_combo.setCurrentText("lof"))
    timed("render a frame, points", lambda: widget.plot.grab())
    timed("click: nearest point + move the viewer", lambda: widget.select_at(0.1, 0.2))
    timed("slider: ring the current point", lambda: viewer.dims.set_point(0, 4321))
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--ranking-only", action="store_true")
    parser.add_argument("--no-ranking", action="store_true")
    parser.add_argument("--jobs", nargs="+", default=["tsne", "pca", "sklearn-tsne"],
                        help="tsne (tm.embed), pca (tm.embed method=pca), sklearn-tsne (peer, <= 20k items)")
    parser.add_argument("--widget-only", action="store_true", help="only time the widget's drawing at 100k")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; cpus {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f} at start")

    if args.widget_only:
        widget_drawing()
        return
    if not args.no_ranking:
        found = ranking()
        print("\ncorrupted sinograms (of 10) in the top 20 of 500, seeds 0-4:")
        for kind, counts in found.items():
            print(f"  features={kind:9s} {counts}  mean {np.mean(counts):.1f}")
    if args.ranking_only:
        return

    print("\n  items  job                        wall time  CPU time   peak RSS   RSS after imports")
    for n in args.sizes:
        path = make_stack(n, CACHE / f"items-{n}-64x64.h5")
        jobs = [j for j in args.jobs if j != "sklearn-tsne" or n <= 20_000]
        for job in jobs:
            r = measure(job, path, n)
            label = {"tsne": "tm.embed (openTSNE)", "pca": "tm.embed method=pca",
                     "sklearn-tsne": "sklearn TSNE (peer)"}[job]
            print(f"  {n:6d}  {label:25s} {r['seconds']:7.1f} s  {r['cpu_seconds']:7.1f} s  {r['peak_mib']:7.0f} MiB  "
                  f"{r['after_imports_mib']:7.0f} MiB", flush=True)
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        widget_drawing()
    else:
        print("\n(no display: widget drawing not timed; run under xvfb-run -a)")
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
