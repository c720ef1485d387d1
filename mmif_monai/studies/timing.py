"""Measuring a study's methods: interleaved timing, peak memory, FLOPs and parameters (the benchmark's and the
comparison's Table 5 in the spirit of the MMIF paper).

Peak memory: on the CPU, the rise of the process's resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` after returning freed heap to the system with ``malloc_trim``) over the resident set
before the call, so it counts every page the call touched, whatever allocated it; on CUDA, torch's allocator
peak above what was allocated before.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mmif_monai.fusion.pipeline import FuseFn

__all__ = [
    "synchronizer",
    "time_interleaved",
    "median_ratio",
    "peak_memory_mib",
    "available_memory_mib",
    "gflop_per_call",
    "parameter_count",
    "cpu_ms_per_pair",
]


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for ``device`` (CUDA runs asynchronously; a timer must wait for it)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def time_interleaved(
    calls: dict[str, Callable[[], object]], warmup: int, repeats: int, sync: Callable[[], None]
) -> dict[str, list[float]]:
    """Wall times (s) of each call, the calls run round-robin so that a change of machine load hits all alike."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(times: Sequence[float], reference: Sequence[float]) -> float:
    """Median over rounds of the per-round time ratio: robust to load that changes between rounds."""
    return statistics.median(t / r for t, r in zip(times, reference))


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status: no {key}")


def _return_free_heap() -> None:
    """Give freed heap pages back to the system (glibc), so the next peak is not hidden by reused pages."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak memory (MiB) that one call of ``fn`` adds (see the module docstring); None where unmeasurable."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        _return_free_heap()
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # reset VmHWM to the current resident set
        base = _proc_status_kib("VmRSS")
        fn()
        return (_proc_status_kib("VmHWM") - base) / 1024
    except OSError:
        return None


def available_memory_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free / 2**20
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def gflop_per_call(fn: Callable[[], object]) -> float:
    """GFLOP of convolutions and matrix products in one call (element-wise work is not counted)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def parameter_count(fuse: FuseFn) -> int:
    """Learnable parameters of a network as trained (buffers such as MMIF-Net's fixed LatLRR projection not
    counted; an inference form counts its source's, batch norm included); 0 for a classical rule."""
    if not isinstance(fuse, nn.Module):
        return 0
    return getattr(fuse, "source_parameters", None) or sum(p.numel() for p in fuse.parameters())


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
        times = time_interleaved({"fuse": partial(fuse, anatomical, functional)}, warmup, repeats, lambda: None)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times["fuse"]) * 1000
