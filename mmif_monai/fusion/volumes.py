"""Fusing 3D volumes slice by slice with the 2D fusion methods, and their orthogonal previews.

:func:`fuse_volume` colours a PET/SPECT volume with :data:`PET_COLORMAP` and fuses the slices along one axis in
batches through :func:`~mmif_monai.fusion.pipeline.fuse_batch`, so a colour functional image has its luminance fused
and its chrominance kept, as in the 2D PET path. The whole file job (load, normalise, align, fuse, write) is
:func:`mmif_monai.jobs.volumes.fuse_volume_files`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import cast

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from monai.transforms import Orientation
from tqdm import tqdm

from mmif_monai.fusion.pipeline import FuseFn, fuse_batch, source_support
from mmif_monai.io.preflight import OUTPUT_FORMATS, SLICE_BATCH
from mmif_monai.transforms import FUNCTIONAL_MODALITIES, MODALITY_KEY, canonical_modality, modality_from_meta

__all__ = [
    "PET_COLORMAP",
    "OUTPUT_FORMATS",
    "AXIS_NAMES",
    "apply_colormap",
    "resolve_axis",
    "FOREGROUND_MARGIN",
    "joint_foreground",
    "fuse_volume",
    "preview_slices",
]

#: colour map for PET/SPECT: matplotlib's "hot" (black -> red -> yellow -> white)
PET_COLORMAP = "hot"
#: background pixels kept around the joint foreground when only that box is fused: more than the reach of the
#: networks' local layers, so that the box's edge does not change what they compute inside the foreground
FOREGROUND_MARGIN = 32
#: the shortest longer side of a preview image, in pixels: smaller views are enlarged for viewing
PREVIEW_MIN_SIDE = 256
#: named slicing axes and the world (RAS) axis each is perpendicular to
AXIS_NAMES = {"sagittal": 0, "coronal": 1, "axial": 2}


@lru_cache(maxsize=4)
def _colormap_table(name: str) -> torch.Tensor:
    import matplotlib

    return torch.as_tensor(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3], dtype=torch.float32)


def apply_colormap(volume: torch.Tensor, name: str = PET_COLORMAP) -> torch.Tensor:
    """A (1, ...) image in [0, 1] as (3, ...) RGB through the matplotlib colour map ``name`` (256 levels)."""
    table = _colormap_table(name).to(volume.device)
    index = (volume[0].clamp(0, 1) * 255.0).round().long()
    return torch.movedim(table[index], -1, 0)


def resolve_axis(axis: int | str, affine: np.ndarray | torch.Tensor) -> int:
    """The voxel axis (0, 1, 2) to slice along: ``axis`` itself, or for a name in :data:`AXIS_NAMES` the voxel
    axis closest to that plane's normal in world coordinates."""
    if isinstance(axis, str) and axis.lower() in AXIS_NAMES:
        directions = np.abs(np.asarray(affine, dtype=np.float64)[:3, :3])
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        return int(np.argmax(directions[AXIS_NAMES[axis.lower()]]))
    if str(axis) in ("0", "1", "2"):
        return int(axis)
    raise ValueError(f"axis must be 0, 1, 2 or one of {', '.join(AXIS_NAMES)}, got {axis!r}")


def _plain(volume: torch.Tensor) -> torch.Tensor:
    """The data without MetaTensor bookkeeping, which would otherwise follow every slicing step."""
    return volume.as_tensor() if isinstance(volume, MetaTensor) else torch.as_tensor(volume)


def _wants_colour(functional: torch.Tensor, colour: bool | None) -> bool:
    if colour is not None:
        return colour
    name = modality_from_meta(functional.meta) if isinstance(functional, MetaTensor) else None
    return name is not None and canonical_modality(name) in FUNCTIONAL_MODALITIES


def joint_foreground(
    anatomical_slices: torch.Tensor, functional_slices: torch.Tensor, margin: int
) -> tuple[torch.Tensor, slice, slice]:
    """For (S, C, H, W) slice stacks: the indices of the slices non-zero in either source, and the rows and columns
    of the box holding every such pixel of all slices, grown by ``margin`` and clipped to the slice."""
    support = source_support(anatomical_slices, functional_slices)[:, 0] > 0  # (S, H, W)
    occupied = support.flatten(1).any(dim=1).nonzero()[:, 0]
    if len(occupied) == 0:
        return occupied, slice(0, 0), slice(0, 0)
    plane = support.any(dim=0)  # (H, W): non-zero in some slice
    rows, columns = plane.any(dim=1).nonzero()[:, 0], plane.any(dim=0).nonzero()[:, 0]

    def grown(extent: torch.Tensor, side: int) -> slice:
        return slice(max(0, int(extent[0]) - margin), min(side, int(extent[-1]) + 1 + margin))

    return occupied, grown(rows, plane.shape[0]), grown(columns, plane.shape[1])


@torch.no_grad()
def fuse_volume(
    fuse_fn: FuseFn,
    anatomical: MetaTensor,
    functional: torch.Tensor,
    axis: int | str = 2,
    batch_size: int = SLICE_BATCH,
    colour: bool | None = None,
    colormap: str = PET_COLORMAP,
    device: str | torch.device = "cpu",
    progress: bool = False,
    foreground_only: bool = True,
) -> MetaTensor:
    """Fuse two volumes on one grid, slice by slice along ``axis``, ``batch_size`` slices at a time.

    With ``foreground_only`` the fusion sees only the joint foreground: slices empty in both sources are not fused,
    and the others are cropped to the box of every pixel non-zero in either source (over all slices, so that they
    still batch), grown by :data:`FOREGROUND_MARGIN` pixels. Fusion keeps exactly-zero background at zero
    (:func:`~mmif_monai.fusion.pipeline.fuse_batch`), so the result outside the box is the full-frame one; inside
    it, only operations that see the whole slice (MMIF-Net's attention) can differ (tests/test_volumes.py states by
    how much).

    Args:
        fuse_fn: a 2D fusion callable on (N, 1, H, W) batches in [0, 1] (``load_fusion_method``).
        anatomical: (1, X, Y, Z) in [0, 1] with its affine.
        functional: (1 | 3, X, Y, Z) in [0, 1] on the same grid; a grey one is coloured with ``colormap``
            when ``colour`` is True, or None and its meta says PET or SPECT (``PT``/``NM``).
        axis: voxel axis 0, 1, 2, or ``"axial"``, ``"coronal"``, ``"sagittal"`` (:func:`resolve_axis`).
        batch_size: slices per network call.
        colour: force (True) or forbid (False) the colour map; None decides by modality.
        colormap: matplotlib colour map name.
        device: where the slices are fused.
        progress: a progress bar over the slices (on a terminal only).
        foreground_only: fuse the joint foreground only (above); False fuses every full slice.

    Returns:
        (C, X, Y, Z) in [0, 1] with the anatomical affine: C = 3 for a colour functional volume, else 1.
    """
    if anatomical.dim() != 4 or anatomical.shape[0] != 1:
        raise ValueError(f"anatomical volume must be (1, X, Y, Z), got {tuple(anatomical.shape)}")
    if functional.dim() != 4 or functional.shape[0] not in (1, 3) or functional.shape[1:] != anatomical.shape[1:]:
        raise ValueError(
            f"functional volume must be (1 or 3, {', '.join(map(str, anatomical.shape[1:]))}) on the anatomical "
            f"grid, got {tuple(functional.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dim = 1 + resolve_axis(axis, anatomical.affine)
    source = _plain(functional).float()
    if source.shape[0] == 1 and _wants_colour(functional, colour):
        source = apply_colormap(source, colormap)
    # (C, X, Y, Z) -> (slices, C, H, W)
    anatomical_slices = torch.movedim(_plain(anatomical).float(), dim, 0)
    functional_slices = torch.movedim(source, dim, 0)
    fused = torch.zeros((functional_slices.shape[0], functional_slices.shape[1], *anatomical_slices.shape[2:]))
    fused_slices, rows, columns = torch.arange(fused.shape[0]), slice(None), slice(None)
    if foreground_only:
        fused_slices, rows, columns = joint_foreground(anatomical_slices, functional_slices, FOREGROUND_MARGIN)
    # disable=None: a bar on a terminal, none in logs and pipes
    with tqdm(total=len(fused_slices), desc="fusing", unit="slice", disable=None if progress else True) as bar:
        for chunk in torch.split(fused_slices, batch_size):
            fused[chunk, :, rows, columns] = fuse_batch(
                fuse_fn,
                anatomical_slices[chunk, :, rows, columns].to(device),
                functional_slices[chunk, :, rows, columns].to(device),
            ).cpu()
            bar.update(len(chunk))
    meta = {k: v for k, v in anatomical.meta.items() if k not in (MODALITY_KEY, "affine")}
    return MetaTensor(torch.movedim(fused, 0, dim), affine=anatomical.affine.clone(), meta=meta)


def preview_slices(volume: MetaTensor) -> dict[str, torch.Tensor]:
    """The middle axial, coronal and sagittal slices of a (C, X, Y, Z) volume as (C, H, W) display images.

    The volume is first put in RAS axis order, so each view has the usual radiological layout: axial and coronal
    with the patient's right on the image's left, axial with anterior up, coronal and sagittal with superior up,
    sagittal with anterior on the left. Anisotropic voxels are stretched to square pixels, and a small volume's
    views are enlarged so that their longer side has at least :data:`PREVIEW_MIN_SIDE` pixels (a 64-voxel phantom
    would otherwise be a thumbnail).
    """
    ras = cast(MetaTensor, Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(volume))
    data = _plain(ras).float()
    spacing = np.linalg.norm(np.asarray(ras.affine, dtype=np.float64)[:3, :3], axis=0)
    centre = [n // 2 for n in data.shape[1:]]
    # each view: (slice axis, the voxel axis shown across, the voxel axis shown down); RAS indices grow towards
    # right, anterior, superior, so flipping both puts right (axial, coronal) or anterior (sagittal) on the
    # left and anterior (axial) or superior (coronal, sagittal) at the top
    views = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}
    previews = {}
    for name, (normal, across, down) in views.items():
        plane = data.select(1 + normal, centre[normal])  # (C, remaining two axes in order)
        kept = [a for a in range(3) if a != normal]
        plane = plane.permute(0, 1 + kept.index(down), 1 + kept.index(across)).flip(1, 2)
        height, width = plane.shape[1] * spacing[down], plane.shape[2] * spacing[across]
        scale = min(spacing[down], spacing[across])
        scale /= max(1.0, PREVIEW_MIN_SIDE / max(height / scale, width / scale))
        size = (max(1, round(height / scale)), max(1, round(width / scale)))
        previews[name] = torch.nn.functional.interpolate(plane[None], size=size, mode="bilinear")[0].clamp(0, 1)
    return previews
