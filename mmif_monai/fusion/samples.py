"""Fusing a folder laid out like AANLIB (the shipped samples): outputs per pair type and a preview grid."""

from __future__ import annotations

from pathlib import Path

import torch

from mmif_monai.fusion.files import FileJob, fuse_files, match_pair_folders
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.io.aanlib import PAIR_TYPES
from mmif_monai.io.images import check_output_path, read_slice
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.io.preview import save_preview_grid

__all__ = ["SAMPLES_DIR", "fuse_dataset_folder"]


def fuse_dataset_folder(
    fuse: FuseFn,
    dataset_dir: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[list[Path], Path]:
    """Fuse every pair type present under ``dataset_dir`` into ``output_dir/<pair type>/``.

    Returns the fused files and a preview PNG (anatomical | functional | fused, one row per pair).
    """
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    jobs: list[FileJob] = []
    for pair_type, (anat, func) in PAIR_TYPES.items():
        if (dataset_dir / pair_type).is_dir():
            jobs += match_pair_folders(
                dataset_dir / pair_type / anat, dataset_dir / pair_type / func, output_dir / pair_type
            )
    if not jobs:
        raise FileNotFoundError(f"{dataset_dir}: no pair-type folders ({', '.join(PAIR_TYPES)})")
    preview = check_output_path(output_dir / "preview.png", overwrite)
    written = fuse_files(fuse, jobs, overwrite=overwrite, device=device, progress=progress)
    rows = [[read_slice(j.anatomical), read_slice(j.functional), read_slice(j.output)] for j in jobs]
    labels = [f"{j.output.parent.name}/{j.output.stem}" for j in jobs]
    save_preview_grid(rows, labels, ["anatomical", "functional", "fused"], preview)
    return written, preview
