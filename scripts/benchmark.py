"""Speed, memory and scale of MMIF-Net, side by side with a DenseFuse-shaped network, in one run.

Sections (``--sections`` picks; all by default), each printed as a table of medians after warm-up:

- ``matmul``: the machine's float32 matrix-multiply rate, the ceiling the FLOP floors below are taken against.
- ``inference``: per-pair time and throughput of MMIF-Net (shipped weights) and
  :class:`mmif_monai.networks.DenseFuse` at each ``--batch-sizes``, timed interleaved in this process so that
  the ratio holds while the machine's load changes; parameters, GFLOP per pair (convolutions and matrix
  products, ``torch.utils.flop_counter``), the floor = FLOPs / matmul rate, and peak memory. ``eager`` is the
  network as trained; ``optimised`` is its inference form, the one every entry point runs
  (``prepare_for_inference``: batch norm folded into the convolutions, channels-last), plus ``--compile``,
  ``--dtype``, ``--cuda-graphs`` when asked. ``--sketches`` adds untrained faster
  configurations (time only; their quality would need training).
- ``engines``: per-pair time of MMIF-Net (shipped weights) and the fast configuration (random weights) on each
  engine, torch's inference form, ONNX Runtime and OpenVINO running the ONNX export, against DenseFuse's inference
  form in torch, all with ``--engine-threads`` threads at batch 1, interleaved: the table the CPU engine of
  ``mmif fuse`` (``mmif_monai.fusion.engines.CPU_ENGINE``) is chosen from.
- ``latlrr``: the LatLRR decomposition of a pair: FFT (used), direct 31x31 convolution, explicit unfold/fold.
- ``volume``: the 3D job end to end (load, resample, fuse, write) on a phantom pair, once, with MMIF-Net on the
  default engine and with ``average`` (the cost of everything but the network), each in a fresh process whose peak
  resident memory is reported.
- ``startup``: ``mmif fuse`` of one shipped 2D sample pair in a fresh process, against a process that only runs
  ``import torch``, interleaved; and once with an empty export cache (the first run of a weights file).
- ``metrics``: the batched torch fusion metrics against the numpy/scipy reference (``tests/oracles.py``);
  the script exits with status 1 if any value disagrees by more than 1 %.
- ``training``: reconstruction training steps (task + MSE/SSIM loss + Adam) per second.
- ``quality`` (only with ``--quality-pairs N``): Qabf / VIF of the fast configuration against the paper's on the
  first N validation pairs of each type, same shipped weights.

Peak memory: as :func:`mmif_monai.studies.timing.peak_memory_mib` measures it; the 3D job's is its process's peak
resident set. The last table holds issue #33's targets, each a ratio (or the peak) of the sections above. Exported
models go to a temporary cache for the run (``MMIF_CACHE_DIR``), so the first export is measured and the user's
cache is left alone. Results and the machine they came from: ``docs/benchmarks.md``.

    python scripts/benchmark.py                                    # everything, CPU
    OMP_WAIT_POLICY=passive python scripts/benchmark.py --threads 2 # on a machine shared with other jobs
    python scripts/benchmark.py --device cuda --dtype bfloat16 --compile --batch-sizes 1 64 512
    python scripts/benchmark.py --size 64 --batch-sizes 1 2 --repeats 1 --warmup 0 --metrics-n 2 \\
        --train-batch 2 --train-crop 64 --volume-shape 64 64 4             # smoke run (CI)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmif_monai.decomposition.projection import LatLRRDecomposition, load_projection
from mmif_monai.engines.tasks import ReconstructionTask
from mmif_monai.fusion.engines import CACHE_ENV, CPU_ENGINE, RUNTIME_ENGINES, engine_line, load_engine
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, PAIR_TYPES, list_pairs, split_pairs
from mmif_monai.io.paths import DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.io.preflight import SLICE_BATCH
from mmif_monai.losses import ReconstructionLoss
from mmif_monai.metrics import (
    METRIC_NAMES,
    batched_metrics,
    image_files,
    image_names,
    load_grey,
    stretch_to_uint8_range,
)
from mmif_monai.networks import DenseFuse, MMIFNet
from mmif_monai.networks.inference import prepare_for_inference
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, PAPER_WEIGHTS, load_mmif_net
from mmif_monai.studies.documents import machine_description
from mmif_monai.studies.fusions import stage_sources
from mmif_monai.studies.tables import Table
from mmif_monai.studies.tables import format_number as fmt
from mmif_monai.studies.timing import (
    available_memory_mib,
    gflop_per_call,
    median_ratio,
    parameter_count,
    peak_memory_mib,
    synchronizer,
    time_interleaved,
)

# the numpy/scipy oracles the tests check the library against live with the tests, not in the package
sys.path.insert(0, str(REPO_ROOT / "tests"))
from oracles import decompose_explicit, reference_metrics  # noqa: E402

SECTIONS = ("matmul", "inference", "engines", "latlrr", "volume", "startup", "metrics", "training", "quality")
METRICS_TOLERANCE = 0.01
#: faster configurations that would need training (timed with random weights; docs/benchmarks.md)
SKETCHES: dict[str, dict[str, Any]] = {
    "decompose=False, f0=16": {"decompose": False, "features": (16, 32, 48, 48, 64)},
    "decompose=False, msl=False": {"decompose": False, "msl": False},
    "decompose=False, msl=False, f0=16": {"decompose": False, "msl": False, "features": (16, 32, 48, 48, 64)},
}
#: the two shipped configurations (bundles/mmif_net/models): the product default and the paper's
DEFAULT_LABEL, PAPER_LABEL = "MMIF-Net fast (default)", "MMIF-Net paper"
#: issue #33's targets: key -> (what is measured, its bound)
TARGETS = {
    "pair": ("default engine per pair / DenseFuse in torch", 0.5),
    "volume": ("3D job / the same job with average", 2.0),
    "startup": ("mmif fuse of one 2D pair / python -c 'import torch'", 1.5),
    "memory": ("3D job's peak resident memory, GiB", 2.0),
}


# --------------------------------------------------------------------------------------------- sections


@dataclass
class Matmul:
    """An n x n float32 matrix product: the ceiling, re-timed inside every interleaved round of the inference
    tables so that their floors use the rate of the same moment (the load of a shared machine changes)."""

    call: Callable[[], object]
    gflop: float


def measure_matmul(args: argparse.Namespace, device: torch.device) -> tuple[Table, Matmul]:
    """float32 (and ``--dtype``) GFLOP/s of an n x n matmul; returns the table and the float32 product."""
    n = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    table = Table(["operation", "GFLOP/s", "ms"], title="matmul rate (the ceiling)")
    products = {}
    dtypes = [torch.float32] + ([args.torch_dtype] if args.torch_dtype != torch.float32 else [])
    for dtype in dtypes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        products[dtype] = Matmul(partial(torch.matmul, a, b), 2 * n**3 / 1e9)
        calls = {"mm": products[dtype].call}
        times = time_interleaved(calls, args.warmup + 1, max(args.repeats, 3), synchronizer(device))
        seconds = statistics.median(times["mm"])
        label = f"{n}x{n} @ {n}x{n} {str(dtype).removeprefix('torch.')}"
        table.add(label, fmt(products[dtype].gflop / seconds), fmt(seconds * 1e3))
    return table, products[torch.float32]


def _pairs(batch: int, size: int, device: torch.device, dtype: torch.dtype, channels_last: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.rand(2, batch, 1, size, size, generator=generator)
    fmt_ = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(t.to(device=device, dtype=dtype).contiguous(memory_format=fmt_) for t in (a, b))


def optimise(network: nn.Module, args: argparse.Namespace, device: torch.device) -> nn.Module:
    """The inference form every entry point runs (:func:`prepare_for_inference`: batch norm folded,
    channels-last), in ``--dtype``, optionally ``torch.compile``-d."""
    network = prepare_for_inference(network).to(device=device, dtype=args.torch_dtype)
    if args.compile:
        network = cast(nn.Module, torch.compile(network, mode=args.compile_mode))  # an OptimizedModule
    return network


def cuda_graphed(network: nn.Module, a: torch.Tensor, b: torch.Tensor) -> Callable[..., torch.Tensor]:
    """``network`` replayed from a captured CUDA graph for inputs shaped like ``a``, ``b`` (launch cost paid once)."""
    static_a, static_b = a.clone(), b.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as capture requires
            network(static_a, static_b)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = network(static_a, static_b)

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        static_a.copy_(x)
        static_b.copy_(y)
        graph.replay()
        return static_out

    return run


@dataclass
class Candidate:
    """A network to time: ``network`` runs, ``source`` (the plain float32 module) is counted."""

    name: str
    variant: str
    network: nn.Module
    source: nn.Module
    optimised: bool
    memory_per_pair_mib: float | None = None


def measure_inference(args: argparse.Namespace, device: torch.device, matmul: Matmul) -> Iterator[Table]:
    """One table per batch size, yielded as soon as it is measured."""
    shipped = load_mmif_net(device=device).network
    paper = load_mmif_net(PAPER_WEIGHTS, device=device).network
    densefuse = DenseFuse().to(device).eval()
    candidates = [
        Candidate("DenseFuse", "eager", densefuse, densefuse, False),
        Candidate(DEFAULT_LABEL, "eager", shipped, shipped, False),
        Candidate(PAPER_LABEL, "eager", paper, paper, False),
        Candidate("DenseFuse", "optimised", optimise(densefuse, args, device), densefuse, True),
        Candidate(DEFAULT_LABEL, "optimised", optimise(shipped, args, device), shipped, True),
        Candidate(PAPER_LABEL, "optimised", optimise(paper, args, device), paper, True),
    ]
    if args.sketches:
        for label, kwargs in SKETCHES.items():
            sketch = MMIFNet(**kwargs).to(device).eval()
            name = f"sketch {label} (untrained)"
            candidates.append(Candidate(name, "optimised", optimise(sketch, args, device), sketch, True))
    one = _pairs(1, args.size, device, torch.float32, False)
    counts = {}
    for c in candidates:
        if id(c.source) not in counts:
            with torch.inference_mode():
                counts[id(c.source)] = (gflop_per_call(partial(c.source, *one)), parameter_count(c.source))

    sync = synchronizer(device)
    columns = ["model", "variant", "batch", "ms/pair", "pairs/s", "x DenseFuse", "params", "GFLOP/pair",
               "floor ms", "floor/time", "peak MiB"]  # fmt: skip
    for batch in args.batch_sizes:
        table = Table(columns, title=f"inference, {args.size}x{args.size} pairs on {device.type}, batch {batch}")
        table.notes += [
            "x DenseFuse: median over interleaved rounds of time / DenseFuse's time, same variant and batch",
            "floor = GFLOP / float32 matmul rate, the matmul timed in the same rounds; floor/time = share of that "
            "ceiling (median over rounds)",
        ]
        for variant_optimised in (False, True):
            group = [c for c in candidates if c.optimised == variant_optimised]
            if variant_optimised is False and batch > args.eager_max_batch:
                table.notes.append(f"eager rows skipped at batch {batch} (> --eager-max-batch {args.eager_max_batch})")
                continue
            inputs = _pairs(batch, args.size, device, args.torch_dtype if variant_optimised else torch.float32,
                            variant_optimised)  # fmt: skip
            runnable, peaks = {}, {}
            for c in group:
                available = available_memory_mib(device)
                needed = (c.memory_per_pair_mib or 0.0) * batch
                if available and needed > args.memory_fraction * available:
                    table.add(c.name, c.variant, batch, *["skipped"] * 8)
                    table.notes.append(
                        f"{c.name} {c.variant} batch {batch}: about {fmt(needed)} MiB needed, "
                        f"{fmt(available)} MiB available (--memory-fraction {args.memory_fraction}) - skipped"
                    )
                    continue
                fn: Callable[..., torch.Tensor] = c.network
                if args.cuda_graphs and device.type == "cuda" and c.optimised:
                    with torch.inference_mode():
                        fn = cuda_graphed(c.network, *inputs)
                with torch.inference_mode():
                    peaks[c.name] = peak_memory_mib(partial(fn, *inputs), device)  # also the first warm-up call
                if peaks[c.name] is not None:
                    c.memory_per_pair_mib = max(c.memory_per_pair_mib or 0.0, peaks[c.name] / batch)
                runnable[c.name] = partial(fn, *inputs)
            if not runnable:
                continue
            with torch.inference_mode():
                times = time_interleaved({**runnable, "matmul": matmul.call}, args.warmup, args.repeats, sync)
            rates = [matmul.gflop / t for t in times["matmul"]]
            table.notes.append(
                f"{'optimised' if variant_optimised else 'eager'} rounds: matmul {fmt(statistics.median(rates))} "
                f"GFLOP/s (median; {fmt(min(rates))} to {fmt(max(rates))})"
            )
            reference = times.get("DenseFuse")
            for c in group:
                if c.name not in times:
                    continue
                seconds = statistics.median(times[c.name]) / batch
                gflop, params = counts[id(c.source)]
                # the floor of each round at that round's matmul rate, as a share of the model's time
                shares = [gflop / rate / t * batch for rate, t in zip(rates, times[c.name])]
                floor = gflop / statistics.median(rates)
                table.add(
                    c.name, c.variant, batch, fmt(seconds * 1e3), fmt(1 / seconds),
                    fmt(median_ratio(times[c.name], reference)) if reference else "n/a",
                    f"{params:,}", fmt(gflop), fmt(floor * 1e3), f"{statistics.median(shares):.0%}", fmt(peaks[c.name]),
                )  # fmt: skip
        yield table


def measure_engines(args: argparse.Namespace, targets: dict[str, float]) -> list[Table]:
    """Per-pair time of MMIF-Net's two shipped configurations on each engine against DenseFuse's inference form in
    torch: one ``--size`` pair, ``--engine-threads`` threads for every engine, interleaved.
    Records the default engine's ratio in ``targets``."""
    cpu = torch.device("cpu")
    runtimes = [name for name in RUNTIME_ENGINES if importlib.util.find_spec(name) is not None]
    title = f"engines: one {args.size}x{args.size} pair (batch 1) on the CPU, {args.engine_threads} threads"
    table = Table(["model", "engine", "ms/pair", "pairs/s", "x DenseFuse", "peak MiB"], title=title)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.engine_threads)  # the runtimes take torch's thread count (load_engine)
    try:
        networks = {DEFAULT_LABEL: load_mmif_net().network, PAPER_LABEL: load_mmif_net(PAPER_WEIGHTS).network}
        engines: dict[tuple[str, str], Callable[..., torch.Tensor]] = {
            ("DenseFuse", "torch"): load_engine(DenseFuse().eval(), "torch")
        }
        for name, network in networks.items():
            for engine in ("torch", *runtimes):
                engines[(name, engine)] = load_engine(network, engine)
        pair = _pairs(1, args.size, cpu, torch.float32, False)
        calls: dict[str, Callable[[], object]] = {
            f"{model} / {engine}": partial(fuse, *pair) for (model, engine), fuse in engines.items()
        }
        peaks = {name: peak_memory_mib(call, cpu) for name, call in calls.items()}  # also the first warm-up call
        times = time_interleaved(calls, args.warmup, args.repeats, lambda: None)
    finally:
        torch.set_num_threads(previous)
    reference = times["DenseFuse / torch"]
    for model, engine in engines:
        laps = times[f"{model} / {engine}"]
        seconds = statistics.median(laps)
        table.add(model, engine, fmt(seconds * 1e3), fmt(1 / seconds), fmt(median_ratio(laps, reference)),
                  fmt(peaks[f"{model} / {engine}"]))  # fmt: skip
    targets["pair"] = median_ratio(times[f"{DEFAULT_LABEL} / {CPU_ENGINE}"], reference)
    table.notes += [
        "x DenseFuse: median over interleaved rounds of time / the time of DenseFuse's inference form in torch",
        "engines: " + "; ".join(str(engine_line(engines[(DEFAULT_LABEL, e)])) for e in ("torch", *runtimes)),
        f"mmif fuse on the CPU (--engine auto) runs {CPU_ENGINE}; peak MiB: resident memory added by the first call",
    ]
    if len(runtimes) == 2:
        first, second = runtimes
        ratio = median_ratio(times[f"{DEFAULT_LABEL} / {first}"], times[f"{DEFAULT_LABEL} / {second}"])
        faster = first if ratio < 1 else second
        table.notes.append(
            f"{DEFAULT_LABEL}: {first} time / {second} time = {fmt(ratio)}: the faster CPU runtime is {faster}"
        )
    return [table]


def measure_latlrr(args: argparse.Namespace, device: torch.device) -> list[Table]:
    decomposition = LatLRRDecomposition(load_projection()).to(device)
    pair = torch.cat(_pairs(1, args.size, device, torch.float32, False))
    pad = decomposition.patch_size - 1

    def direct_convolution() -> torch.Tensor:
        planes = F.pad(pair, [pad] * 4, mode="reflect")
        return pair - F.conv2d(planes, decomposition.kernel())

    calls = {
        "FFT (used)": lambda: decomposition(pair),
        "direct 31x31 convolution": direct_convolution,
        "explicit unfold/project/fold": lambda: decompose_explicit(pair, decomposition.projection),
    }
    with torch.inference_mode():
        reference = decompose_explicit(pair, decomposition.projection)[1]
        errors = {
            "FFT (used)": (decomposition(pair)[1] - reference).abs().max().item(),
            "direct 31x31 convolution": (pair - direct_convolution() - reference).abs().max().item(),
            "explicit unfold/project/fold": 0.0,
        }
        times = time_interleaved(calls, args.warmup, args.repeats, synchronizer(device))
    table = Table(["method", "ms/pair", "x FFT", "max abs error vs explicit"],
                  title=f"LatLRR decomposition of one {args.size}x{args.size} pair (both sources)")  # fmt: skip
    for name in calls:
        table.add(name, fmt(statistics.median(times[name]) * 1e3), fmt(median_ratio(times[name], times["FFT (used)"])),
                  f"{errors[name]:.1e}")  # fmt: skip
    return [table]


#: the 3D job in a fresh process (argv: anatomical, functional, output, method, device, torch threads or 0, slices per
#: network call): its step times, slice count, engine and the process's peak resident memory, as one JSON line
VOLUME_JOB = """
import json, resource, sys
import torch
from mmif_monai.jobs.volumes import fuse_volume_files
anatomical, functional, output, method, device, threads, batch = sys.argv[1:]
if int(threads):
    torch.set_num_threads(int(threads))
result = fuse_volume_files(anatomical, functional, output, method=method, device=device, batch_size=int(batch))
print(json.dumps({
    "steps": {name: lap.wall for name, lap in result.timings.items()},
    "slices": result.count,
    "engine": next((line.split()[1] for line in result.notes if line.startswith("engine: ")), "-"),
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
}))
"""


def measure_volume(args: argparse.Namespace, device: torch.device, targets: dict[str, float]) -> list[Table]:
    """The 3D job on a phantom pair with MMIF-Net (default engine) at each ``--volume-batch-sizes`` and with
    ``average``, each once in a fresh process; records the time ratio and MMIF-Net's peak resident memory at the
    default batch (:data:`SLICE_BATCH`, else the first given) in ``targets``."""
    from mmif_monai.phantoms import write_phantom_nifti

    steps = ("load", "normalise", "align", "model", "fuse", "write")
    columns = ["method", "engine", "batch", "shape", "total s", *(f"{s} s" for s in steps), "ms/slice", "peak MiB"]
    table = Table(columns, title="3D job end to end (fuse_volume_files on a phantom NIfTI pair), one run each")
    shape = tuple(args.volume_shape)
    jobs = [("mmif-net", batch) for batch in args.volume_batch_sizes] + [("average", SLICE_BATCH)]
    totals, peaks = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        phantom = write_phantom_nifti(Path(tmp) / "phantom", shape=shape)
        for method, batch in jobs:
            output = Path(tmp) / f"fused-{method}-{batch}.nii.gz"
            command = [sys.executable, "-c", VOLUME_JOB, str(phantom.anatomical), str(phantom.functional), str(output),
                       method, str(device), str(args.threads or 0), str(batch)]  # fmt: skip
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                raise RuntimeError(f"the 3D job with {method} failed:\n{completed.stderr[-3000:]}")
            run = json.loads(completed.stdout.strip().splitlines()[-1])
            totals[method, batch], peaks[method, batch] = sum(run["steps"].values()), run["peak_mib"]
            laps = [f"{run['steps'][s]:.2f}" if s in run["steps"] else "n/a" for s in steps]
            table.add(method, run["engine"], batch, "x".join(map(str, shape)), fmt(totals[method, batch]), *laps,
                      fmt(totals[method, batch] / run["slices"] * 1e3), fmt(peaks[method, batch]))  # fmt: skip
    default = ("mmif-net", SLICE_BATCH if SLICE_BATCH in args.volume_batch_sizes else args.volume_batch_sizes[0])
    targets["volume"] = totals[default] / totals["average", SLICE_BATCH]
    targets["memory"] = peaks[default] / 1024
    table.notes += [
        "the job fuses with MMIF-Net on the default engine (mmif fuse's) on the joint foreground only; method=average "
        "is the same job with a free fusion rule, i.e. the cost of everything but the network",
        f"batch: slices per network call (mmif fuse --batch-size; default {SLICE_BATCH}); the first MMIF-Net run of "
        "a weights file also exports it to ONNX (its model s)",
        "peak MiB: the job's process's peak resident set (ru_maxrss), Python, torch and the engine included",
    ]
    return [table]


def measure_startup(args: argparse.Namespace, device: torch.device, targets: dict[str, float]) -> list[Table]:
    """``mmif fuse`` of one 2D pair against ``import torch``, fresh processes, interleaved; before them, one
    ``mmif fuse`` with an empty export cache (a weights file's first run), which fills the cache the others use.
    Records the ratio in ``targets``."""
    from mmif_monai.io.paths import SAMPLES_DIR

    anatomical, functional = (
        SAMPLES_DIR / "mri_pet" / "MRI" / "30061.png",
        SAMPLES_DIR / "mri_pet" / "PET" / "30061.png",
    )
    with tempfile.TemporaryDirectory() as tmp:
        fuse = [sys.executable, "-m", "mmif_monai.cli.main", "fuse", "--anatomical", str(anatomical),
                "--functional", str(functional), "-o", str(Path(tmp) / "fused.png"), "--overwrite",
                "--device", str(device)]  # fmt: skip
        environment = {**os.environ, CACHE_ENV: str(Path(tmp) / "cache")}
        start = time.perf_counter()
        subprocess.run(fuse, check=True, capture_output=True, env=environment)
        first_run = time.perf_counter() - start
        commands = {"python -c 'import torch'": [sys.executable, "-c", "import torch"], "mmif fuse (one 2D pair)": fuse}
        calls: dict[str, Callable[[], object]] = {
            name: partial(subprocess.run, command, check=True, capture_output=True, env=environment)
            for name, command in commands.items()
        }
        times = time_interleaved(calls, args.warmup, args.repeats, lambda: None)
    reference = times["python -c 'import torch'"]
    table = Table(["command", "median s", "x import torch"], title="start-up: fresh processes, interleaved")
    for name, laps in times.items():
        table.add(name, fmt(statistics.median(laps)), fmt(median_ratio(laps, reference)))
    table.add("mmif fuse, first run (ONNX export)", fmt(first_run), fmt(first_run / statistics.median(reference)))
    targets["startup"] = median_ratio(times["mmif fuse (one 2D pair)"], reference)
    table.notes.append(
        "the first run, once and before the others, exports the network into an empty cache (--engine auto on the "
        "CPU); the interleaved runs read that cache; its ratio is to the median of import torch"
    )
    return [table]


def targets_table(targets: dict[str, float]) -> Table:
    """Issue #33's targets (:data:`TARGETS`) with what the sections measured, those that ran."""
    table = Table(["target", "measured", "bound", "met"], title="targets (issue #33), this run")
    for key, (label, bound) in TARGETS.items():
        if key in targets:
            table.add(label, fmt(targets[key]), fmt(bound), "yes" if targets[key] <= bound else "no")
    return table


# ---- metrics: the batched torch path against the numpy/scipy reference

Triplet = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_metric_triplets(args: argparse.Namespace) -> list[Triplet]:
    """(fused, a, b) float64 grey images: AANLIB pairs with their average as the "fused" image, or folders."""
    if args.metrics_a is not None:
        a_files, b_files = image_files(args.metrics_a), image_files(args.metrics_b)
        f_files = image_files(args.metrics_fused)
        names = image_names(args.metrics_a, args.metrics_b)[: args.metrics_n]
        paths: list[tuple[Path | None, Path, Path]] = [(f_files[n], a_files[n], b_files[n]) for n in names]
    else:
        pairs = list_pairs(args.dataset_dir, [args.metrics_pair_type])[: args.metrics_n]
        paths = [(None, p.anatomical, p.functional) for p in pairs]
    triplets = []
    for fused_path, a_path, b_path in paths:
        a, b = (load_grey(p).astype(np.float64) for p in (a_path, b_path))
        fused = (a + b) / 2 if fused_path is None else load_grey(fused_path)
        triplets.append((stretch_to_uint8_range(fused), a, b))
    return triplets


def max_relative_difference(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got - ref| / |ref|; equal values (infinite PSNR) and NaN on both sides (undefined) agree."""
    agree = (got == ref) | (np.isnan(got) & np.isnan(ref))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)
    return float(np.max(np.where(agree, 0.0, np.nan_to_num(rel, nan=np.inf))))


def measure_metrics(args: argparse.Namespace, device: torch.device) -> tuple[list[Table], float]:
    """Per-metric times of both paths and their largest disagreement; returns the tables and that worst value."""
    triplets = load_metric_triplets(args)
    if not triplets:
        raise FileNotFoundError(f"{args.dataset_dir}: no {args.metrics_pair_type} pairs for the metrics benchmark")

    def as_batch(chunk: list[Triplet]) -> tuple[torch.Tensor, ...]:  # (fused, a, b) as (N, 1, H, W)
        return tuple(torch.from_numpy(np.stack([t[k] for t in chunk])[:, None]).to(device) for k in range(3))

    batches = [as_batch(triplets[i : i + args.metrics_batch]) for i in range(0, len(triplets), args.metrics_batch)]
    previous = torch.get_num_threads()
    torch.set_num_threads(args.metrics_threads)  # the reference is single-threaded numpy/scipy

    def run_numpy(name: str) -> list[float]:
        return [reference_metrics(f, a, b, [name], args.ssim_protocol)[name] for f, a, b in triplets]

    def run_torch(name: str) -> list[float]:
        # .tolist() copies to the host, which also waits for an asynchronous device
        return [v for f, a, b in batches for v in batched_metrics(f, a, b, [name], args.ssim_protocol)[name].tolist()]

    shape = "x".join(map(str, triplets[0][0].shape))
    table = Table(
        title=f"metrics: {len(triplets)} triplets of {shape}, torch on {device.type} "
        f"({args.metrics_threads} thread(s)) vs numpy/scipy, batch {args.metrics_batch}, "
        f"SSIM protocol {args.ssim_protocol}",
        columns=["metric", "numpy ms", "torch ms", "speed-up", "max rel diff"],
    )
    totals, worst = [0.0, 0.0], 0.0
    try:
        for name in METRIC_NAMES:
            times = {}
            for path, fn in (("numpy", run_numpy), ("torch", run_torch)):
                for _ in range(args.warmup):
                    fn(name)
                runs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    values = fn(name)
                    runs.append(time.perf_counter() - start)
                times[path] = (statistics.median(runs), values)
            (t_np, ref), (t_torch, got) = times["numpy"], times["torch"]
            diff = max_relative_difference(np.asarray(got), np.asarray(ref))
            worst = max(worst, diff)
            totals[0] += t_np
            totals[1] += t_torch
            table.add(name, fmt(t_np * 1e3), fmt(t_torch * 1e3), fmt(t_np / t_torch) + "x", f"{diff:.1e}")
    finally:
        torch.set_num_threads(previous)
    table.add("total", fmt(totals[0] * 1e3), fmt(totals[1] * 1e3), fmt(totals[0] / totals[1]) + "x", f"{worst:.1e}")
    return [table], worst


def measure_training(args: argparse.Namespace, device: torch.device) -> list[Table]:
    """Images per second of the reconstruction training step, MMIF-Net and DenseFuse side by side."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.train_batch, 1, args.train_crop, args.train_crop, generator=generator).to(device)
    loss_fn = ReconstructionLoss().to(device)
    projection = load_projection()
    tasks = {
        "MMIF-Net (ReconstructionTask)": ReconstructionTask(MMIFNet(projection=projection)).to(device),
        "DenseFuse (reconstruct)": _Reconstruct(DenseFuse()).to(device),
    }
    steps: dict[str, Callable[[], object]] = {}
    for name, task in tasks.items():
        optimizer = torch.optim.Adam(task.parameters(), lr=1e-4)

        def step(task: nn.Module = task, optimizer: torch.optim.Optimizer = optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(task(images), images)
            loss.backward()
            optimizer.step()

        task.train()
        steps[name] = step
    times = time_interleaved(steps, args.warmup, args.repeats, synchronizer(device))
    table = Table(
        title=f"training: reconstruction step (MSE + 10 (1 - SSIM), Adam), batch {args.train_batch} of "
        f"{args.train_crop}x{args.train_crop} crops",
        columns=["model", "ms/step", "images/s", "x DenseFuse"],
    )
    for name in tasks:
        seconds = statistics.median(times[name])
        table.add(name, fmt(seconds * 1e3), fmt(args.train_batch / seconds),
                  fmt(median_ratio(times[name], times["DenseFuse (reconstruct)"])))  # fmt: skip
    table.notes.append("one training sample is one image (the paper's autoencoder task), so images/s = pairs/s")
    return [table]


class _Reconstruct(nn.Module):
    """A network's autoencoder pass as ``forward``, the form the training step calls."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return cast(Any, self.network).reconstruct(image)


def measure_quality(args: argparse.Namespace, device: torch.device) -> list[Table]:
    """Qabf / VIF of the two shipped configurations on validation pairs."""
    from mmif_monai.jobs.slices import FileJob, fuse_files
    from mmif_monai.metrics.report import evaluate_folders

    _, validation = split_pairs(list_pairs(args.dataset_dir), DEFAULT_VALIDATION_CASES)
    configs = {DEFAULT_LABEL: DEFAULT_WEIGHTS, PAPER_LABEL: PAPER_WEIGHTS}
    title = f"quality of the shipped configurations (first {args.quality_pairs} validation pairs per type)"
    table = Table(["pair type", "configuration", "Qabf", "VIF"], title=title)
    with tempfile.TemporaryDirectory() as tmp:
        for pair_type in PAIR_TYPES:
            pairs = [p for p in validation if p.pair_type == pair_type][: args.quality_pairs]
            if not pairs:
                continue
            anatomical, functional = stage_sources(pairs, Path(tmp) / pair_type / "sources")
            folders = {}
            for label, weights in configs.items():
                network = load_mmif_net(weights, device=device).network
                folder = Path(tmp) / pair_type / weights.parent.name
                fuse_files(network, [FileJob(p.anatomical, p.functional, folder / p.name) for p in pairs],
                           device=device, progress=False)  # fmt: skip
                folders[label] = folder
            scores = evaluate_folders(folders, anatomical, functional, device=device, progress=False)
            for label in configs:
                table.add(pair_type, label, fmt(statistics.mean(scores[label]["Qabf"]), 4),
                          fmt(statistics.mean(scores[label]["VIF"]), 4))  # fmt: skip
    return [table]


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=[s for s in SECTIONS if s != "quality"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (medians reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    g = parser.add_argument_group("inference")
    g.add_argument("--size", type=int, default=256, help="square image side")
    g.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    g.add_argument("--eager-max-batch", type=int, default=8, help="largest batch also timed as shipped (eager)")
    g.add_argument("--memory-fraction", type=float, default=0.25,
                   help="skip a batch whose estimated peak exceeds this share of the available memory")  # fmt: skip
    g.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    g.add_argument("--compile", action="store_true", help="torch.compile the optimised networks")
    g.add_argument("--compile-mode", default="default", help="torch.compile mode, e.g. max-autotune")
    g.add_argument("--cuda-graphs", action="store_true", help="replay the optimised networks from CUDA graphs")
    g.add_argument("--sketches", action="store_true", help="also time untrained faster configurations")
    g.add_argument("--matmul-size", type=int, help="matrix side for the matmul rate (default 2048 CPU, 8192 CUDA)")
    g = parser.add_argument_group("engines")
    g.add_argument("--engine-threads", type=int, default=2, help="CPU threads of every engine in the engines table")
    g = parser.add_argument_group("volume")
    g.add_argument("--volume-shape", type=int, nargs=3, default=[256, 256, 180])
    g.add_argument(
        "--volume-batch-sizes", type=int, nargs="+", default=[SLICE_BATCH],
        help="slices per network call of the MMIF-Net 3D jobs, one job each",
    )  # fmt: skip
    g = parser.add_argument_group("metrics")
    g.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    g.add_argument("--metrics-pair-type", default="mri_pet")
    g.add_argument("--metrics-a", type=Path, help="first source folder (with --metrics-b, --metrics-fused)")
    g.add_argument("--metrics-b", type=Path)
    g.add_argument("--metrics-fused", type=Path)
    g.add_argument("--metrics-n", type=int, default=32, help="number of triplets")
    g.add_argument("--metrics-batch", type=int, default=16)
    g.add_argument("--metrics-threads", type=int, default=1, help="torch threads; 1 matches the numpy reference")
    g.add_argument("--ssim-protocol", default="literature", choices=("literature", "correct"))
    g = parser.add_argument_group("training")
    g.add_argument("--train-batch", type=int, default=16)
    g.add_argument("--train-crop", type=int, default=128)
    g = parser.add_argument_group("quality")
    g.add_argument("--quality-pairs", type=int, default=0, help="validation pairs per type (adds the section)")
    args = parser.parse_args(argv)
    folders = (args.metrics_a, args.metrics_b, args.metrics_fused)
    if any(folders) and not all(folders):
        parser.error("--metrics-a, --metrics-b and --metrics-fused go together")
    if min(args.repeats, *args.batch_sizes, *args.volume_batch_sizes, args.size, args.engine_threads) < 1 or (
        args.warmup < 0
    ):
        parser.error(
            "--repeats, --batch-sizes, --volume-batch-sizes, --size and --engine-threads must be positive and "
            "--warmup >= 0"
        )
    if args.quality_pairs > 0 and "quality" not in args.sections:
        args.sections.append("quality")
    args.torch_dtype = getattr(torch, args.dtype)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmark: error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 1
    if device.type != "cuda" and args.cuda_graphs:
        print("benchmark: --cuda-graphs applies to CUDA only; ignored", file=sys.stderr)
    load_before = os.getloadavg()
    header = f"{machine_description(device)}; medians of {args.repeats} after {args.warmup} warm-up"
    print(header, flush=True)
    tables: list[Table] = []
    targets: dict[str, float] = {}
    status = 0
    cache = tempfile.TemporaryDirectory(prefix="mmif-benchmark-cache-")
    os.environ[CACHE_ENV] = cache.name  # exports of this run, read by its subprocesses too

    def emit(new: list[Table]) -> None:
        for table in new:
            print("\n" + table.text(), flush=True)
        tables.extend(new)

    matmul_table, matmul = measure_matmul(args, device)
    emit([matmul_table])
    if "inference" in args.sections:
        for table in measure_inference(args, device, matmul):
            emit([table])
    if "engines" in args.sections:
        emit(measure_engines(args, targets))
    if "latlrr" in args.sections:
        emit(measure_latlrr(args, device))
    if "volume" in args.sections:
        emit(measure_volume(args, device, targets))
    if "startup" in args.sections:
        emit(measure_startup(args, device, targets))
    if "metrics" in args.sections:
        metric_tables, worst = measure_metrics(args, device)
        emit(metric_tables)
        if worst > METRICS_TOLERANCE:
            print(f"metrics: torch and numpy disagree by {worst:.1e} > {METRICS_TOLERANCE:.0%}", file=sys.stderr)
            status = 1
    if "training" in args.sections:
        emit(measure_training(args, device))
    if "quality" in args.sections:
        emit(measure_quality(args, device))
    if targets:
        emit([targets_table(targets)])
    cache.cleanup()
    load_after = os.getloadavg()
    footer = f"1-minute load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end"
    print("\n" + footer)
    if args.markdown:
        args.markdown.write_text("\n".join([header, "", footer, ""] + [t.markdown() for t in tables]))
    return status


if __name__ == "__main__":
    sys.exit(main())
