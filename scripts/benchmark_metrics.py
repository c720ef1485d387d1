"""Time the vectorised torch metrics against the straightforward numpy/scipy reference, and compare values.

By default the triplets are AANLIB MRI-PET pairs with their plain average (stretched like a fused image) as the
"fused" image; ``--a/--b/--fused`` score folders instead. Both paths get the same preloaded 8-bit grey images,
so loading is not timed. Each metric is timed ``--warmup`` + ``--repeats`` times over all triplets and the
median of the repeats is reported. Exits with status 1 if any value disagrees by more than 1%.

    python scripts/benchmark_metrics.py                  # 32 pairs, 3 repeats
    python scripts/benchmark_metrics.py --n 4 --repeats 1  # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mmif_monai.io.paths import DEFAULT_DATASET_DIR
from mmif_monai.io.aanlib import list_pairs
from mmif_monai.metrics import METRIC_NAMES, batched_metrics, image_files, image_names, load_grey
from mmif_monai.metrics import stretch_to_uint8_range
from mmif_monai.metrics.reference import reference_metrics

Triplet = tuple[np.ndarray, np.ndarray, np.ndarray]
TOLERANCE = 0.01


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--pair-type", default="mri_pet")
    parser.add_argument("--a", type=Path, help="first source folder (with --b and --fused)")
    parser.add_argument("--b", type=Path, help="second source folder")
    parser.add_argument("--fused", type=Path, help="fused image folder")
    parser.add_argument("--n", type=int, default=32, help="number of triplets")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats before")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 (default) matches the single-threaded numpy/scipy reference",
    )
    parser.add_argument("--ssim-protocol", default="literature", choices=("literature", "correct"))
    args = parser.parse_args()
    folders = (args.a, args.b, args.fused)
    if any(folders) and not all(folders):
        parser.error("--a, --b and --fused go together")
    return args


def load_triplets(args: argparse.Namespace) -> list[Triplet]:
    """(fused, a, b) float64 grey images; the fused image follows the stretch protocol."""
    if args.a is not None:
        a_files, b_files, f_files = image_files(args.a), image_files(args.b), image_files(args.fused)
        names = image_names(args.a, args.b)[: args.n]
        paths = [(f_files[n], a_files[n], b_files[n]) for n in names]
    else:
        pairs = list_pairs(args.dataset_dir, [args.pair_type])[: args.n]
        paths = [(None, p.anatomical, p.functional) for p in pairs]
    triplets = []
    for fused_path, a_path, b_path in paths:
        a, b = (load_grey(p).astype(np.float64) for p in (a_path, b_path))
        fused = (a + b) / 2 if fused_path is None else load_grey(fused_path)
        triplets.append((stretch_to_uint8_range(fused), a, b))
    return triplets


def to_batches(triplets: list[Triplet], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(fused, a, b) as (N, 1, H, W) tensors."""
    return tuple(torch.from_numpy(np.stack([t[k] for t in triplets])[:, None]).to(device) for k in range(3))


def median_seconds(fn: Callable[[], list[float]], warmup: int, repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs, and its last result."""
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        values = fn()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), values


def max_relative_difference(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got - ref| / |ref|; equal values (infinite PSNR) and NaN on both sides (undefined) agree."""
    agree = (got == ref) | (np.isnan(got) & np.isnan(ref))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)
    return float(np.max(np.where(agree, 0.0, np.nan_to_num(rel, nan=np.inf))))


def table_row(name: str, t_np: float, t_torch: float, diff: float) -> str:
    return f"{name:<6} {t_np * 1e3:>11.1f} {t_torch * 1e3:>11.1f} {t_np / t_torch:>8.1f}x {diff:>13.1e}"


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    triplets = load_triplets(args)
    if not triplets:
        print("no triplets found", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    batches = [to_batches(triplets[i : i + args.batch_size], device) for i in range(0, len(triplets), args.batch_size)]

    def run_numpy(name: str) -> list[float]:
        return [reference_metrics(f, a, b, [name], args.ssim_protocol)[name] for f, a, b in triplets]

    def run_torch(name: str) -> list[float]:
        # .tolist() copies to the host, which also waits for an asynchronous device
        return [v for f, a, b in batches for v in batched_metrics(f, a, b, [name], args.ssim_protocol)[name].tolist()]

    shape = "x".join(map(str, triplets[0][0].shape))
    print(
        f"{len(triplets)} triplets of {shape}, torch on {device} ({torch.get_num_threads()} threads), "
        f"batch size {args.batch_size}, SSIM protocol {args.ssim_protocol}, "
        f"median of {args.repeats} after {args.warmup} warm-up"
    )
    header = f"{'metric':<6} {'numpy [ms]':>11} {'torch [ms]':>11} {'speed-up':>9} {'max rel diff':>13}"
    print(header)
    print("-" * len(header))
    total_np = total_torch = 0.0
    worst = 0.0
    for name in METRIC_NAMES:
        t_np, ref = median_seconds(partial(run_numpy, name), args.warmup, args.repeats)
        t_torch, got = median_seconds(partial(run_torch, name), args.warmup, args.repeats)
        diff = max_relative_difference(np.asarray(got), np.asarray(ref))
        worst = max(worst, diff)
        total_np += t_np
        total_torch += t_torch
        print(table_row(name, t_np, t_torch, diff))
    print("-" * len(header))
    print(table_row("total", total_np, total_torch, worst))
    if worst > TOLERANCE:
        print(f"disagreement above {TOLERANCE:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
