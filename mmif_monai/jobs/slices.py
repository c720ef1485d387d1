"""Fusing slice files: match pairs, load and check every input first, then fuse in batches and write.

The steps, each timed in the :class:`~mmif_monai.jobs.results.JobResult`: ``read`` (the path checks of
:mod:`mmif_monai.io.preflight`, then every input read and checked), ``model`` (:func:`run_file_jobs` only) and
``fuse`` (fused in batches and written). Bad input anywhere leaves no output behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from mmif_monai.fusion.colour import LuminanceLimit
from mmif_monai.fusion.engines import engine_line
from mmif_monai.fusion.methods import load_fusion_method
from mmif_monai.fusion.pipeline import FuseFn, fuse_batch
from mmif_monai.io.images import check_not_constant, read_slice, warn_if_nearly_empty, write_image_atomic
from mmif_monai.io.preflight import SLICE_BATCH, FileJob, check_file_jobs, match_pair_folders
from mmif_monai.jobs.results import JobResult
from mmif_monai.transforms import check_anatomical_modality

#: the smallest slice side every method fuses (the classical LatLRR rule's patches); MMIF-Net fuses a slice
#: smaller than its own 64 px on a zero canvas and crops it back
MIN_SLICE_SIDE = 16

__all__ = [
    "MIN_SLICE_SIDE",
    "FileJob",
    "LoadedPair",
    "match_pair_folders",
    "read_file_jobs",
    "write_fused_jobs",
    "fuse_files",
    "run_file_jobs",
]

#: the images of one job, read and checked: (anatomical (1, H, W), functional (1 | 3, H, W)), in [0, 1]
LoadedPair = tuple[torch.Tensor, torch.Tensor]


def _load_job(job: FileJob) -> LoadedPair:
    anatomical, functional = read_slice(job.anatomical), read_slice(job.functional)
    if anatomical.shape[0] != 1:
        raise ValueError(f"{job.anatomical}: the anatomical image must be grey, got a colour image")
    check_anatomical_modality(getattr(anatomical, "meta", {}), job.anatomical)
    for path, image in ((job.anatomical, anatomical), (job.functional, functional)):
        check_not_constant(image, path)
        warn_if_nearly_empty(image, path)
    if anatomical.shape[-2:] != functional.shape[-2:]:
        raise ValueError(
            f"{job.functional}: size {tuple(functional.shape[-2:])} differs from the anatomical image "
            f"{job.anatomical} {tuple(anatomical.shape[-2:])}"
        )
    if min(anatomical.shape[-2:]) < MIN_SLICE_SIDE:
        side = MIN_SLICE_SIDE
        raise ValueError(f"{job.anatomical}: images must be at least {side}x{side}, got {tuple(anatomical.shape[-2:])}")
    return anatomical, functional


def read_file_jobs(jobs: Sequence[FileJob], overwrite: bool = False, progress: bool = True) -> list[LoadedPair]:
    """Check every job's paths (:func:`~mmif_monai.io.preflight.check_file_jobs`), then read and check every
    input, before anything is fused or written."""
    check_file_jobs(jobs, overwrite)
    return [_load_job(job) for job in tqdm(jobs, desc="reading", disable=None if progress else True, leave=False)]


def write_fused_jobs(
    fuse: FuseFn,
    jobs: Sequence[FileJob],
    loaded: Sequence[LoadedPair],
    batch_size: int = SLICE_BATCH,
    device: str | torch.device = "cpu",
    progress: bool = True,
    luminance_limit: LuminanceLimit | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Fuse the pairs :func:`read_file_jobs` gave for ``jobs`` and write each output; returns the written paths.
    Images of one size and colour kind are fused in batches of ``batch_size``; ``luminance_limit`` goes to
    :func:`~mmif_monai.fusion.pipeline.fuse_batch`. Without ``overwrite`` an output that appeared since the checks
    (another run writing the same name) is not replaced: FileExistsError naming it, the earlier batches written."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    # batch together what stacks: same size and same number of functional channels
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, (_, functional) in enumerate(loaded):
        groups.setdefault(tuple(functional.shape), []).append(index)
    written: list[Path] = []
    # disable=None: a progress bar on a terminal, none in logs and pipes
    with tqdm(total=len(jobs), desc="fusing", unit="pair", disable=None if progress else True) as bar:
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                anatomical = torch.stack([loaded[i][0] for i in chunk]).to(device)
                functional = torch.stack([loaded[i][1] for i in chunk]).to(device)
                for i, image in zip(chunk, fuse_batch(fuse, anatomical, functional, luminance_limit=luminance_limit)):
                    write_image_atomic(image, jobs[i].output, overwrite)
                    written.append(jobs[i].output)
                bar.update(len(chunk))
    return written


def _run(
    load_fuse: Callable[[], FuseFn],
    jobs: Sequence[FileJob],
    overwrite: bool,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    result: JobResult,
    luminance_limit: LuminanceLimit | None,
) -> JobResult:
    with result.step("read"):
        loaded = read_file_jobs(jobs, overwrite, progress)
    with result.step("model"):  # after reading: bad input fails before a model is loaded
        fuse = load_fuse()
    with result.step("fuse"):
        result.outputs += write_fused_jobs(fuse, jobs, loaded, batch_size, device, progress, luminance_limit, overwrite)
    result.count += len(jobs)
    return result


def fuse_files(
    fuse: FuseFn,
    jobs: Sequence[FileJob],
    overwrite: bool = False,
    batch_size: int = SLICE_BATCH,
    device: str | torch.device = "cpu",
    progress: bool = True,
    luminance_limit: LuminanceLimit | None = None,
) -> JobResult:
    """Fuse every job with ``fuse`` and write its output: :func:`read_file_jobs`, then :func:`write_fused_jobs`."""
    return _run(lambda: fuse, jobs, overwrite, batch_size, device, progress, JobResult(unit="pair"), luminance_limit)


def run_file_jobs(
    jobs: Sequence[FileJob],
    method: str = "mmif-net",
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    batch_size: int = SLICE_BATCH,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    luminance_limit: LuminanceLimit | None = None,
    engine: str = "auto",
) -> JobResult:
    """Fuse every job with the method named ``method`` (``load_fusion_method``, on ``engine``), loaded once the
    inputs are read and checked; ``report`` is called with the model's description and its engine as soon as it is
    loaded. ``luminance_limit`` keeps colour on its scale step (:mod:`mmif_monai.fusion.colour`)."""
    result = JobResult(unit="pair", report=report)

    def load() -> FuseFn:
        fuse, description = load_fusion_method(method, weights, device, engine, report=result.note)
        result.note(f"model: {description}")
        if line := engine_line(fuse, device):
            result.note(f"engine: {line}")
        return fuse

    return _run(load, jobs, overwrite, batch_size, device, progress, result, luminance_limit)
