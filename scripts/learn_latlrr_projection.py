"""Learn the MDLatLRR salient-feature projection from the AANLIB training split and save it for the bundle.

Example::

    python scripts/learn_latlrr_projection.py --dataset-dir ../shared/data/aanlib

On a machine shared with other jobs, ``OPENBLAS_NUM_THREADS=1`` avoids BLAS thread oversubscription, which
otherwise slows the per-iteration SVDs several-fold.

Grey MRI and CT slices are used as they are; PET and SPECT pseudo-colour slices contribute their luminance
``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601), the channel the fusion operates on. Only the training
split of :func:`mmif_monai.io.aanlib.split_pairs` is read, so the held-out cases never shape the projection.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmif_monai.decomposition.latlrr import DEFAULT_LAMBDA, learn_projection
from mmif_monai.decomposition.projection import (
    DEFAULT_PATCH_SIZE,
    LatLRRDecomposition,
    default_projection_path,
)
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, list_pairs, split_pairs
from mmif_monai.transforms.color import YIQ_FROM_RGB

# the luminance the network fuses: the Y row of the YIQ matrix
LUMA_WEIGHTS = YIQ_FROM_RGB[0]


def load_grey(path: Path) -> np.ndarray:
    """An 8-bit slice as float64 in [0, 1]: grey as is, RGB through its BT.601 luminance."""
    with Image.open(path) as image:
        if image.mode == "L":
            return np.asarray(image, dtype=np.float64) / 255.0
        if image.mode == "RGB":
            return np.asarray(image, dtype=np.float64) @ LUMA_WEIGHTS / 255.0
        raise ValueError(f"{path}: unsupported image mode {image.mode!r} (expected L or RGB)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset-dir", type=Path, required=True, help="folder laid out like shared/data/aanlib")
    parser.add_argument("--out", type=Path, default=default_projection_path(), help="output .pt file")
    parser.add_argument("--n-patches", type=int, default=2000, help="number of 16x16 training patches")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch positions")
    parser.add_argument("--lam", type=float, default=DEFAULT_LAMBDA, help="LatLRR sparsity weight")
    parser.add_argument("--max-iter", type=int, default=1000, help="ALM iteration limit")
    parser.add_argument("--log-every", type=int, default=10, help="print progress every N iterations")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    train, validation = split_pairs(list_pairs(args.dataset_dir))
    # A pair's MRI and its CT/PET/SPECT slice are distinct training images.
    paths = sorted({path for pair in train for path in (pair.anatomical, pair.functional)})
    images = [load_grey(path) for path in paths]
    source = f"training split of {args.dataset_dir.name} (AANLIB), cases {DEFAULT_VALIDATION_CASES} held out"
    print(f"{len(images)} slices from {len(train)} pairs: {source}")

    last = {"iteration": 0, "residual": float("nan")}
    start = time.perf_counter()

    def report(iteration: int, mu: float, residual: float) -> None:
        last.update(iteration=iteration, residual=residual)
        if iteration % args.log_every == 0:
            elapsed = time.perf_counter() - start
            print(f"iteration {iteration:4d}  mu {mu:.2e}  residual {residual:.3e}  {elapsed:7.1f} s", flush=True)

    projection = learn_projection(
        images, DEFAULT_PATCH_SIZE, args.n_patches, args.lam, args.seed, args.max_iter, callback=report
    )
    seconds = time.perf_counter() - start
    print(f"solved in {seconds:.1f} s: {last['iteration']} iterations, residual {last['residual']:.3e}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "projection": projection,
            "patch_size": DEFAULT_PATCH_SIZE,
            "n_patches": args.n_patches,
            "lam": args.lam,
            "seed": args.seed,
            "source": source,
            "iterations": last["iteration"],
            "residual": last["residual"],
            "solve_seconds": seconds,
        },
        args.out,
    )
    print(f"saved {args.out}")

    # Sanity check on held-out MRI: the salient part should be small, zero-mean detail.
    decomposition = LatLRRDecomposition(projection)
    mri = torch.from_numpy(np.stack([load_grey(pair.anatomical) for pair in validation])).float()[:, None]
    with torch.no_grad():
        low_rank, salient = decomposition(mri)
    print(
        f"held-out MRI ({mri.shape[0]} slices): mean|image| {mri.abs().mean():.4f}, "
        f"mean|low-rank| {low_rank.abs().mean():.4f}, mean|salient| {salient.abs().mean():.4f}, "
        f"mean salient {salient.mean():+.5f}"
    )


if __name__ == "__main__":
    main()
