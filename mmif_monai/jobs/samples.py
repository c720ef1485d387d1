"""Fusing a folder laid out like AANLIB (the shipped samples): outputs per pair type and a preview grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mmif_monai.io.images import check_output_path, read_slice
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.io.preflight import dataset_folder_jobs
from mmif_monai.io.preview import save_preview_grid
from mmif_monai.jobs.results import JobResult
from mmif_monai.jobs.slices import run_file_jobs

__all__ = ["SAMPLES_DIR", "fuse_dataset_folder"]


def fuse_dataset_folder(
    dataset_dir: str | Path,
    output_dir: str | Path,
    method: str = "mmif-net",
    weights: str | Path | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    engine: str = "auto",
) -> JobResult:
    """Fuse every pair type present under ``dataset_dir`` into ``output_dir/<pair type>/`` with ``method`` (on
    ``engine``, :func:`~mmif_monai.jobs.slices.run_file_jobs`).

    The result's outputs are the fused files, then a preview PNG (anatomical | functional | fused, one row per
    pair); its ``preview`` step times the grid.
    """
    jobs = dataset_folder_jobs(dataset_dir, output_dir)
    preview = check_output_path(Path(output_dir) / "preview.png", overwrite)
    result = run_file_jobs(jobs, method, weights, device, overwrite, progress=progress, report=report, engine=engine)
    with result.step("preview"):
        rows = [[read_slice(j.anatomical), read_slice(j.functional), read_slice(j.output)] for j in jobs]
        labels = [f"{j.output.parent.name}/{j.output.stem}" for j in jobs]
        result.outputs.append(save_preview_grid(rows, labels, ["anatomical", "functional", "fused"], preview))
    return result
