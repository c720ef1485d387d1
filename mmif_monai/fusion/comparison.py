"""Fusing a list of pairs (e.g. the validation split) with several methods, in folders ``mmif evaluate`` reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmif_monai.fusion.files import FileJob, fuse_files
from mmif_monai.fusion.methods import load_fusion_method
from mmif_monai.io.aanlib import FusionPair

__all__ = ["stage_sources", "fuse_with_methods"]


def stage_sources(pairs: Sequence[FusionPair], out_dir: str | Path) -> tuple[Path, Path]:
    """Link the pairs' sources into ``out_dir/anatomical`` and ``out_dir/functional`` (same file names).

    The metrics read folders matched by name; linking avoids copying the data set.
    """
    anatomical, functional = Path(out_dir) / "anatomical", Path(out_dir) / "functional"
    for folder in (anatomical, functional):
        folder.mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        for folder, source in ((anatomical, pair.anatomical), (functional, pair.functional)):
            link = folder / pair.name
            if not link.exists():
                link.symlink_to(source.resolve())
    return anatomical, functional


def fuse_with_methods(
    pairs: Sequence[FusionPair],
    methods: Sequence[str],
    out_dir: str | Path,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Path]:
    """Fuse every pair with every method into ``out_dir/<method>/<name>``; returns method -> folder.

    Results already there are reused, so an interrupted comparison continues where it stopped.
    """
    folders: dict[str, Path] = {}
    for method in methods:
        folder = Path(out_dir) / method
        jobs = [FileJob(p.anatomical, p.functional, folder / p.name) for p in pairs if not (folder / p.name).exists()]
        if jobs:
            fuse, description = load_fusion_method(method, device=device)
            if progress:
                print(f"{method}: {description}")
            fuse_files(fuse, jobs, device=device, progress=progress)
        folders[method] = folder
    return folders
