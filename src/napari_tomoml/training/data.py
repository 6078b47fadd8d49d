"""Paired (noisy, clean) training data for image-to-image models such as TomoGAN.

Pairs of volumes (z, y, x) come from HDF5 files in the published TomoGAN layout
(``train_ns``/``train_gt``/``test_ns``/``test_gt``), TIFF folders, in-memory arrays (napari
layers), or are generated: phantom volumes -> projections -> low-dose (Poisson) and/or
sparse-view FBP as input, FBP of ideal full-dose projections as target.

Every pair is normalised the way inference will see it: the card's normalisation is fitted on
the *noisy* volume alone (inference has nothing else) and that same affine map is applied to both
volumes. Batches are random crops with random flips and 90-degree rotations; the input is the
stack of ``depth`` adjacent slices (mirrored at the ends, as in :func:`denoise`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ScanReadError
from ..models.normalization import DEFAULT_NORMALIZATION, fit_normalization
from ..inference.tiler import adjacent_indices


@dataclass
class PairedVolumes:
    """Normalised noisy/clean volume pairs plus how they were made (goes into the model card).

    >>> rng = np.random.default_rng(0)
    >>> clean = rng.random((4, 32, 32), dtype=np.float32)
    >>> pairs = PairedVolumes.from_arrays(clean + 0.1 * rng.standard_normal(clean.shape), clean)
    >>> x, y = pairs.sample_batch(rng, batch=2, crop=16, depth=3)
    >>> x.shape, y.shape
    ((2, 3, 16, 16), (2, 1, 16, 16))
    """

    noisy: list[np.ndarray]
    clean: list[np.ndarray]
    normalization: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NORMALIZATION))
    description: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, noisy, clean, *, normalization: dict | None = None, description: dict | None = None) -> PairedVolumes:
        """Pairs from arrays: one volume each, or lists of volumes (each (z, y, x) or (y, x)).

        >>> PairedVolumes.from_arrays(np.ones((8, 8)), np.ones((8, 8))).noisy[0].shape
        (1, 8, 8)
        """
        normalization = dict(normalization or DEFAULT_NORMALIZATION)
        noisy_list = list(noisy) if isinstance(noisy, (list, tuple)) else [noisy]
        clean_list = list(clean) if isinstance(clean, (list, tuple)) else [clean]
        if len(noisy_list) != len(clean_list):
            raise InputError(f"{len(noisy_list)} noisy volumes but {len(clean_list)} clean ones")
        out_noisy, out_clean = [], []
        for i, (n, c) in enumerate(zip(noisy_list, clean_list)):
            n, c = _as_volume(n, f"noisy[{i}]"), _as_volume(c, f"clean[{i}]")
            if n.shape != c.shape:
                raise InputError(f"pair {i}: noisy shape {n.shape} differs from clean shape {c.shape}")
            affine = fit_normalization(normalization, n)
            out_noisy.append(affine.apply(n).astype(np.float32))
            out_clean.append(affine.apply(c).astype(np.float32))
        return cls(out_noisy, out_clean, normalization, dict(description or {"source": "arrays"}))

    @classmethod
    def from_hdf5(cls, path: str | Path, split: str = "train", **kw: Any) -> PairedVolumes:
        """Pairs from an HDF5 file in the published layout: datasets ``<split>_ns`` and ``<split>_gt``.

        >>> train = PairedVolumes.from_hdf5("dataset.h5", "train")   # doctest: +SKIP
        """
        import h5py

        path = Path(path)
        keys = (f"{split}_ns", f"{split}_gt")
        try:
            with h5py.File(path, "r") as f:
                missing = [k for k in keys if k not in f]
                if missing:
                    raise ScanReadError(f"{path} has no dataset {missing[0]!r} (expected {keys[0]}/{keys[1]})")
                noisy, clean = f[keys[0]][()], f[keys[1]][()]
        except OSError as exc:
            raise ScanReadError(f"cannot read {path} as HDF5 ({exc})") from exc
        return cls.from_arrays(noisy, clean, description={"source": f"{path.name}:{split}"}, **kw)

    @classmethod
    def from_tiff_folders(cls, noisy_dir: str | Path, clean_dir: str | Path, **kw: Any) -> PairedVolumes:
        """Pairs from two folders of TIFF slices matched by sorted file name.

        >>> pairs = PairedVolumes.from_tiff_folders("noisy/", "clean/")   # doctest: +SKIP
        """
        import tifffile

        stacks = []
        for folder in (Path(noisy_dir), Path(clean_dir)):
            files = sorted([*folder.glob("*.tif"), *folder.glob("*.tiff")])
            if not files:
                raise ScanReadError(f"no .tif/.tiff files in {folder}")
            stacks.append(np.stack([tifffile.imread(f) for f in files]))
        return cls.from_arrays(*stacks, description={"source": f"TIFF folders {noisy_dir} / {clean_dir}"}, **kw)

    @property
    def n_slices(self) -> int:
        return sum(v.shape[0] for v in self.noisy)

    def sample_batch(
        self, rng: np.random.Generator, batch: int, crop: int, depth: int, augment: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random crops: input (batch, depth, crop, crop) and target (batch, 1, crop, crop), float32."""
        sizes = np.array([v.shape[0] for v in self.noisy], float)
        xs, ys = [], []
        for _ in range(batch):
            v = int(rng.choice(len(self.noisy), p=sizes / sizes.sum()))
            noisy, clean = self.noisy[v], self.clean[v]
            nz, h, w = noisy.shape
            if min(h, w) < crop:
                raise InputError(f"crop {crop} is larger than the training slices ({h} x {w})")
            z = int(rng.integers(nz))
            y0, x0 = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            x = noisy[adjacent_indices(z, nz, depth), y0 : y0 + crop, x0 : x0 + crop]
            y = clean[z : z + 1, y0 : y0 + crop, x0 : x0 + crop]
            if augment:
                k, flip = int(rng.integers(4)), bool(rng.integers(2))
                x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k, (1, 2))
                if flip:
                    x, y = x[:, :, ::-1], y[:, :, ::-1]
            xs.append(x)
            ys.append(y)
        return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))

    def validation_pairs(self, depth: int, n: int = 8, crop: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Fixed pairs for validation: ``n`` slices evenly spread, centre-cropped to ``crop`` if given.

        Returns ``(input (1, depth, h, w), target (1, 1, h, w))`` tuples; the same every call.
        """
        picks = [(v, z) for v, vol in enumerate(self.noisy) for z in range(vol.shape[0])]
        chosen = [picks[i] for i in np.linspace(0, len(picks) - 1, min(n, len(picks))).round().astype(int)]
        pairs = []
        for v, z in chosen:
            noisy, clean = self.noisy[v], self.clean[v]
            nz, h, w = noisy.shape
            c_h, c_w = (min(crop, h), min(crop, w)) if crop else (h, w)
            ys, xs = slice((h - c_h) // 2, (h - c_h) // 2 + c_h), slice((w - c_w) // 2, (w - c_w) // 2 + c_w)
            pairs.append((noisy[adjacent_indices(z, nz, depth)][None, :, ys, xs].copy(), clean[None, z : z + 1, ys, xs].copy()))
        return pairs


def _as_volume(array: Any, name: str) -> np.ndarray:
    vol = np.asarray(array, dtype=np.float32)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3:
        raise InputError(f"{name} must be (z, y, x) or (y, x), got shape {vol.shape}")
    if not np.isfinite(vol).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return vol


def simulate_pair(
    phantom: np.ndarray,
    *,
    i0: float | None = 1e3,
    angle_step: int = 1,
    n_angles: int | None = None,
    max_attenuation: float = 2.0,
    seed: int | None = 0,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy FBP, normal-dose FBP) of one phantom volume (z, n, n).

    Projections are scaled so the densest ray keeps ``exp(-max_attenuation)`` of its photons
    (13.5 % at 2.0, a typical well-set-up scan). The noisy input is FBP of Poisson counts with
    ``i0`` photons per pixel (``None``: no noise) at every ``angle_step``-th angle; the target is
    FBP of the ideal projections at all ``n_angles`` angles (default ~ pi/2 x n, fully sampled).

    >>> from napari_tomoml.sim.phantom import random_ellipsoids
    >>> noisy, clean = simulate_pair(random_ellipsoids(64, 4, seed=0), i0=1e3)   # doctest: +SKIP
    """
    from ..recon.fbp import fbp
    from ..recon.projector import project
    from ..sim.dose import simulate_counts, sparse_angles

    n = phantom.shape[-1]
    n_angles = n_angles or int(np.ceil(np.pi / 2 * n))
    theta = np.linspace(0, np.pi, n_angles, endpoint=False).astype(np.float32)
    sino = np.asarray(project(phantom, theta, device=device), dtype=np.float32)
    peak = float(sino.max())
    sino *= max_attenuation / peak if peak > 0 else 1.0
    clean = np.asarray(fbp(sino, theta, device=device), dtype=np.float32)
    low_theta, low_sino = sparse_angles(theta, angle_step, sino)
    if i0 is not None:
        low_sino = simulate_counts(low_sino, i0, np.random.default_rng(seed))
    noisy = np.asarray(fbp(low_sino, low_theta, device=device), dtype=np.float32)
    return noisy, clean


def phantom_slab(family: str, size: int, nz: int, seed: int) -> np.ndarray:
    """``nz`` central slices of a cubic ``size``^3 phantom: isotropic voxels, so adjacent slices
    differ as little as they do in a real scan (a phantom made directly with ``nz`` slices would
    stretch the object along z and make neighbours unrealistically different).

    >>> phantom_slab("ellipsoids", 32, 4, seed=0).shape
    (4, 32, 32)
    """
    from ..sim.phantom import make_phantom

    cube = make_phantom(family, size, size, seed=seed)
    start = (size - nz) // 2
    return np.ascontiguousarray(cube[start : start + nz])


def generate_pairs(
    family: str = "ellipsoids",
    *,
    n_volumes: int = 4,
    size: int = 128,
    nz: int = 16,
    i0: float | None = 1e3,
    angle_step: int = 1,
    seed: int = 0,
    device: str = "auto",
    normalization: dict | None = None,
) -> PairedVolumes:
    """Simulated training pairs: ``n_volumes`` phantoms of one family -> (low-dose FBP, normal-dose FBP).

    Each phantom is a slab of ``nz`` slices from an isotropic cube (:func:`phantom_slab`).
    Phantom ``k`` uses seed ``seed + k`` and its Poisson noise seed ``seed + 10_000 + k``, so a set
    is reproducible and disjoint seeds give disjoint sets.

    >>> train = generate_pairs("ellipsoids", n_volumes=4, size=128, nz=16, i0=1e3)   # doctest: +SKIP
    """
    noisy, clean = [], []
    for k in range(n_volumes):
        phantom = phantom_slab(family, size, nz, seed=seed + k)
        n, c = simulate_pair(phantom, i0=i0, angle_step=angle_step, seed=seed + 10_000 + k, device=device)
        noisy.append(n)
        clean.append(c)
    description = {
        "source": "generated",
        "phantom_family": family,
        "n_volumes": n_volumes,
        "volume_shape": [nz, size, size],
        "phantom": f"central {nz} slices of an isotropic {size}^3 phantom",
        "i0_photons_per_pixel": i0,
        "angle_step": angle_step,
        "n_angles_full": int(np.ceil(np.pi / 2 * size)),
        "max_attenuation": 2.0,
        "target": "FBP of noise-free projections at all angles",
        "input": "FBP of Poisson-noise projections" + (f", every {angle_step}th angle" if angle_step > 1 else ""),
        "seed": seed,
    }
    return PairedVolumes.from_arrays(noisy, clean, normalization=normalization, description=description)
