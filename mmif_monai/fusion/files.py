"""Fusing slice files: match pairs, load and check every input first, then fuse in batches and write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from mmif_monai.fusion.pipeline import FuseFn, fuse_batch
from mmif_monai.io.images import check_output_path, check_outputs_spare_inputs, read_slice, write_image_atomic
from mmif_monai.io.paths import IMAGE_SUFFIXES
from mmif_monai.transforms import MODALITY_ALIASES, modality_from_meta

__all__ = ["FileJob", "match_pair_folders", "fuse_files"]

# DICOM Modality codes of functional imaging (PET, nuclear medicine / SPECT): never the anatomical side
_FUNCTIONAL_MODALITIES = ("PT", "NM")


@dataclass(frozen=True)
class FileJob:
    """One pair of input files and the path its fused image goes to."""

    anatomical: Path
    functional: Path
    output: Path


def match_pair_folders(anatomical_dir: str | Path, functional_dir: str | Path, output_dir: str | Path) -> list[FileJob]:
    """Jobs for the files with the same name in both folders; outputs keep the input names.

    Raises:
        FileNotFoundError: a folder is missing. ValueError: no names in common, or names present in one only,
        or the output folder is an existing file.
    """
    dirs = [Path(anatomical_dir), Path(functional_dir)]
    for folder in dirs:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder")
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ValueError(f"{output_dir}: the output folder is an existing file")
    names = [{p.name for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} for d in dirs]
    if names[0] != names[1]:
        unmatched = sorted(names[0] ^ names[1])[:3]
        raise ValueError(f"{dirs[0]} and {dirs[1]}: files without a partner, e.g. {unmatched}")
    if not names[0]:
        raise ValueError(f"{dirs[0]}: no images ({', '.join(IMAGE_SUFFIXES)})")
    out = Path(output_dir)
    return [FileJob(dirs[0] / n, dirs[1] / n, out / Path(n).with_suffix(".png").name) for n in sorted(names[0])]


def _load_job(job: FileJob) -> tuple[torch.Tensor, torch.Tensor]:
    anatomical, functional = read_slice(job.anatomical), read_slice(job.functional)
    if anatomical.shape[0] != 1:
        raise ValueError(f"{job.anatomical}: the anatomical image must be grey, got a colour image")
    modality = modality_from_meta(getattr(anatomical, "meta", {}))
    if modality is not None and MODALITY_ALIASES.get(modality.upper()) in _FUNCTIONAL_MODALITIES:
        raise ValueError(
            f"{job.anatomical}: the anatomical image is {modality} (functional imaging) by its header; "
            "expected CT or MR. Are --anatomical and --functional swapped?"
        )
    for path, image in ((job.anatomical, anatomical), (job.functional, functional)):
        # an empty or blank export: fusing it would give the other image back and hide the mistake
        if bool(image.amax() == image.amin()):
            raise ValueError(f"{path}: image is constant (every pixel the same value); nothing to fuse")
    if anatomical.shape[-2:] != functional.shape[-2:]:
        raise ValueError(
            f"{job.functional}: size {tuple(functional.shape[-2:])} differs from the anatomical image "
            f"{job.anatomical} {tuple(anatomical.shape[-2:])}"
        )
    if min(anatomical.shape[-2:]) < 64:
        raise ValueError(f"{job.anatomical}: images must be at least 64x64, got {tuple(anatomical.shape[-2:])}")
    return anatomical, functional


def _check_outputs(jobs: Sequence[FileJob], overwrite: bool) -> None:
    """Refuse outputs that are inputs, that two jobs share (``a.png`` and ``a.tif`` in one folder), that are not
    ``.png``, that are symbolic links (which could lead outside the output folder), or that exist (unless
    ``overwrite``)."""
    check_outputs_spare_inputs([job.output for job in jobs], [path for job in jobs for path in (job.anatomical, job.functional)])
    claimed: dict[Path, Path] = {}
    for job in jobs:
        other = claimed.setdefault(job.output.resolve(), job.anatomical)
        if other != job.anatomical:
            raise ValueError(f"{job.output}: both {other.name} and {job.anatomical.name} would be fused into this file")
        if job.output.suffix.lower() != ".png":
            raise ValueError(f"{job.output}: fused slices are written as PNG; give an output ending in .png")
        if job.output.is_symlink():
            raise ValueError(f"{job.output}: output is a symbolic link (to {job.output.readlink()}); refusing to write")
        check_output_path(job.output, overwrite)


def fuse_files(
    fuse: FuseFn,
    jobs: Sequence[FileJob],
    overwrite: bool = False,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[Path]:
    """Fuse every job and write its output; returns the written paths.

    Every input is read and checked, and every output path checked, before anything is written, so bad
    input anywhere leaves no output behind. Images of one size and colour kind are fused in batches.
    """
    _check_outputs(jobs, overwrite)
    loaded = [_load_job(job) for job in tqdm(jobs, desc="reading", disable=None if progress else True, leave=False)]
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
                for i, image in zip(chunk, fuse_batch(fuse, anatomical, functional)):
                    write_image_atomic(image, jobs[i].output)
                    written.append(jobs[i].output)
                bar.update(len(chunk))
    return written
