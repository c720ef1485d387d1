"""Size and CPU speed of a fusion method (the spirit of the MMIF paper's Table 5)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from mmif_monai.fusion.pipeline import FuseFn

__all__ = ["parameter_count", "cpu_ms_per_pair"]


def parameter_count(fuse: FuseFn) -> int:
    """Learnable parameters of a network (buffers such as MMIF-Net's fixed LatLRR projection not counted);
    0 for a classical rule."""
    return sum(p.numel() for p in fuse.parameters()) if isinstance(fuse, nn.Module) else 0


@torch.no_grad()
def cpu_ms_per_pair(fuse: FuseFn, size: int = 256, warmup: int = 1, repeats: int = 5, threads: int = 1) -> float:
    """Median wall time in ms of fusing one grey ``size`` x ``size`` pair on the CPU with ``threads`` torch
    threads, after ``warmup`` untimed calls. Inputs are random images in [0, 1] (the cost does not depend
    on content for any method here); file reading and colour conversion are not included."""
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, threads >= 1; got {repeats}, {warmup}, {threads}")
    generator = torch.Generator().manual_seed(0)
    anatomical, functional = torch.rand(2, 1, 1, size, size, generator=generator)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            fuse(anatomical, functional)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fuse(anatomical, functional)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times)
