"""Fusing a list of pairs (e.g. the validation split) with several methods, in folders ``mmif evaluate`` reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

from mmif_monai.fusion.colour import LuminanceLimit
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.io.aanlib import FusionPair
from mmif_monai.io.images import read_slice
from mmif_monai.io.preview import save_preview_grid
from mmif_monai.jobs.slices import FileJob, fuse_files
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, weights_digest
from mmif_monai.studies.methods import load_method, uses_weights

__all__ = ["stage_sources", "fuse_missing", "fuse_with_methods", "figure_slices", "save_fusion_grid"]


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
    weights: Mapping[str, str | Path] | None = None,
    luminance_limit: LuminanceLimit | None = None,
) -> dict[str, Path]:
    """Fuse every pair with every method (:func:`~mmif_monai.studies.methods.load_method` names) into
    ``out_dir/<folder>/<name>``; returns method -> folder.

    Results already there are reused, so an interrupted study continues where it stopped. A method whose results
    depend on weights (:func:`~mmif_monai.studies.methods.uses_weights`) fuses with ``weights[method]`` (MMIF-Net
    without an entry: the shipped weights) into ``<method>-<weights digest>``: new weights must not reuse the old
    ones' fusions. ``luminance_limit`` goes to :func:`~mmif_monai.fusion.pipeline.fuse_batch`: give every setting
    its own ``out_dir``.
    """
    weights = weights or {}
    folders: dict[str, Path] = {}
    for method in methods:
        given = weights.get(method)
        folder = Path(out_dir) / method
        if uses_weights(method):
            folder = folder.with_name(f"{method}-{weights_digest(given or DEFAULT_WEIGHTS)}")
        load = partial(load_method, method, given, device)
        folders[method] = fuse_missing(load, pairs, folder, device, progress, luminance_limit)
    return folders


def fuse_missing(
    load: Callable[[], tuple[FuseFn, str]],
    pairs: Sequence[FusionPair],
    folder: str | Path,
    device: str = "cpu",
    progress: bool = True,
    luminance_limit: LuminanceLimit | None = None,
) -> Path:
    """Fuse the pairs whose result is not yet in ``folder`` (``folder/<name>``) and return the folder.

    ``load`` gives the fusion callable and a one-line description; it is called only when there is work, so a
    finished folder costs no model loading. With ``progress`` the fusion is announced, shown as a progress bar on a
    terminal, and summed up in one line.
    """
    folder = Path(folder)
    jobs = [FileJob(p.anatomical, p.functional, folder / p.name) for p in pairs if not (folder / p.name).exists()]
    if jobs:
        fuse, description = load()
        if progress:
            print(f"{description}: fusing {len(jobs)} pairs", flush=True)
        result = fuse_files(fuse, jobs, device=device, progress=progress, luminance_limit=luminance_limit)
        if progress:  # also where the bar is off (a log): each method's fusion ends with a line
            print(f"{description}: {result.summary()}", flush=True)
    return folder


def figure_slices(pairs: Sequence[FusionPair]) -> list[FusionPair]:
    """Two slices of a pair type for a figure (a third and two thirds through), or its only one."""
    return [pairs[len(pairs) // 3], pairs[2 * len(pairs) // 3]] if len(pairs) > 2 else list(pairs[:1])


def save_fusion_grid(pairs: Sequence[FusionPair], folders: Mapping[str, Mapping[str, Path]], path: str | Path) -> Path:
    """A PNG grid, one row per pair: its two sources, then its fusion by every method.

    ``folders`` maps each pair type to ``{method title: folder of fused images}``; columns follow the first
    row's methods.
    """
    methods = list(folders[pairs[0].pair_type])
    rows = [
        [read_slice(p.anatomical), read_slice(p.functional)]
        + [read_slice(folders[p.pair_type][m] / p.name) for m in methods]
        for p in pairs
    ]
    labels = [f"{p.pair_type} {p.name}" for p in pairs]
    return save_preview_grid(rows, labels, ["anatomical", "functional", *methods], path)
