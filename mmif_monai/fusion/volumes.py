"""Fusing 3D studies slice by slice with the 2D fusion methods, and the whole file job for ``mmif fuse``.

The job (:func:`fuse_volume_files`): load both volumes (NIfTI, ITK formats, DICOM series) and check them; normalise
each from its real units on its own grid (:class:`~mmif_monai.transforms.ModalityNormalize`: CT Hounsfield window,
MR percentiles, PET/SPECT SUV where the DICOM header allows it, else percentiles); put the functional volume on the
anatomical grid (:func:`~mmif_monai.registration.align_volumes`, optionally registering first); colour a PET/SPECT
volume with :data:`PET_COLORMAP`; fuse the slices along one axis in batches (:func:`fuse_volume`, through
:func:`~mmif_monai.fusion.pipeline.fuse_batch`, so a colour functional image has its luminance fused and its
chrominance kept, as in the 2D PET path); write NIfTI or a DICOM series, three orthogonal PNG previews and, after a
registration, the ITK transform. Every input and output path is checked before anything is written, and all
outputs are written under temporary names and renamed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import cast

import numpy as np
import torch
from monai.data import NibabelWriter
from monai.data.meta_tensor import MetaTensor
from monai.transforms import Orientation

from mmif_monai.fusion.methods import load_fusion_method
from mmif_monai.fusion.pipeline import FuseFn, fuse_batch
from mmif_monai.io.dicom_series import fused_series_datasets, save_series
from mmif_monai.io.images import check_not_constant, write_image_atomic
from mmif_monai.io.outputs import staged_outputs
from mmif_monai.io.preflight import OUTPUT_FORMATS, check_volume_job, registration_requested
from mmif_monai.io.volumes import DICOM_IDENTITY_KEY, load_volume, volume_name
from mmif_monai.registration import align_volumes
from mmif_monai.transforms import (
    FUNCTIONAL_MODALITIES,
    MODALITY_KEY,
    ModalityNormalize,
    canonical_modality,
    modality_from_meta,
)

__all__ = [
    "PET_COLORMAP",
    "OUTPUT_FORMATS",
    "AXIS_NAMES",
    "apply_colormap",
    "resolve_axis",
    "fuse_volume",
    "preview_slices",
    "fuse_volume_files",
]

#: colour map for PET/SPECT: matplotlib's "hot" (black -> red -> yellow -> white)
PET_COLORMAP = "hot"
#: named slicing axes and the world (RAS) axis each is perpendicular to
AXIS_NAMES = {"sagittal": 0, "coronal": 1, "axial": 2}
# a NIfTI/ITK anatomical volume without a modality is taken for CT when it reaches this far into air's HU
_CT_AIR_HU = -500.0


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


@torch.no_grad()
def fuse_volume(
    fuse_fn: FuseFn,
    anatomical: MetaTensor,
    functional: torch.Tensor,
    axis: int | str = 2,
    batch_size: int = 16,
    colour: bool | None = None,
    colormap: str = PET_COLORMAP,
    device: str | torch.device = "cpu",
) -> MetaTensor:
    """Fuse two volumes on one grid, slice by slice along ``axis``, ``batch_size`` slices at a time.

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
    fused = torch.empty((functional_slices.shape[0], functional_slices.shape[1], *anatomical_slices.shape[2:]))
    for start in range(0, fused.shape[0], batch_size):
        chunk = slice(start, start + batch_size)
        fused[chunk] = fuse_batch(
            fuse_fn, anatomical_slices[chunk].to(device), functional_slices[chunk].to(device)
        ).cpu()
    meta = {k: v for k, v in anatomical.meta.items() if k not in (MODALITY_KEY, "affine")}
    return MetaTensor(torch.movedim(fused, 0, dim), affine=anatomical.affine.clone(), meta=meta)


def preview_slices(volume: MetaTensor) -> dict[str, torch.Tensor]:
    """The middle axial, coronal and sagittal slices of a (C, X, Y, Z) volume as (C, H, W) display images.

    The volume is first put in RAS axis order, so each view has the usual radiological layout: axial and coronal
    with the patient's right on the image's left, axial with anterior up, coronal and sagittal with superior up,
    sagittal with anterior on the left. Anisotropic voxels are stretched to square pixels.
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
        size = (max(1, round(height / scale)), max(1, round(width / scale)))
        previews[name] = torch.nn.functional.interpolate(plane[None], size=size, mode="bilinear")[0].clamp(0, 1)
    return previews


def _identity(volume: MetaTensor) -> dict:
    return volume.meta.get(DICOM_IDENTITY_KEY, {})


def _anatomical_modality(volume: MetaTensor, given: str | None) -> str:
    if given is not None:
        return canonical_modality(given)
    recorded = modality_from_meta(volume.meta)
    if recorded is not None:
        return canonical_modality(recorded)
    return "CT" if float(volume.min()) <= _CT_AIR_HU else "MR"


def _check_pair(anatomical: MetaTensor, functional: MetaTensor, functional_modality: str, register: bool | str) -> None:
    """Refuse pairs that would fuse silently wrong; messages name the series, never their identifiers."""
    a_name, f_name = volume_name(anatomical), volume_name(functional)
    ids = [str(_identity(v).get("PatientID", "")).strip() for v in (anatomical, functional)]
    if all(ids) and ids[0] != ids[1]:
        raise ValueError(f"{f_name}: its PatientID differs from that of {a_name}; refusing to fuse two patients")
    frames = [str(_identity(v).get("FrameOfReferenceUID", "")).strip() for v in (anatomical, functional)]
    if all(frames) and frames[0] != frames[1] and not registration_requested(register):
        # two frames of reference: the headers' coordinates are not one space, so header geometry cannot align
        # them, and the output would claim the anatomical frame for a functional volume that is not in it
        raise ValueError(
            f"{f_name}: its FrameOfReferenceUID differs from that of {a_name}, so their header geometry does not "
            "relate them; pass --register to align them by image content"
        )
    for volume in (anatomical, functional):
        check_not_constant(volume, volume_name(volume))
    anatomical_modality = modality_from_meta(anatomical.meta)
    if anatomical_modality is not None and canonical_modality(anatomical_modality) in FUNCTIONAL_MODALITIES:
        raise ValueError(f"{a_name}: a {anatomical_modality} volume is functional, not anatomical")
    if functional_modality in FUNCTIONAL_MODALITIES and float(functional.min()) <= _CT_AIR_HU:
        # activity and SUV are never negative: values down in air's Hounsfield units are a CT
        raise ValueError(
            f"{f_name}: a {functional_modality} volume reaching {float(functional.min()):.0f} looks like CT in "
            "Hounsfield units; are --anatomical and --functional swapped? (--modalities overrides)"
        )


def _write_nifti(fused: MetaTensor, path: Path) -> None:
    """uint8 NIfTI with the fused affine; RGB as a last (4th) dimension of size 3, MONAI's channel-last layout."""
    writer = NibabelWriter(output_dtype=np.uint8)
    writer.set_data_array((fused.detach().cpu().clamp(0, 1) * 255.0).round(), channel_dim=0)
    affine = np.asarray(fused.affine, dtype=np.float64)
    writer.set_metadata({"affine": affine, "original_affine": affine}, resample=False)
    writer.write(str(path))


def fuse_volume_files(
    anatomical: str | Path,
    functional: str | Path,
    output: str | Path,
    output_format: str = "nifti",
    method: str = "mmif-net",
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    register: bool | str = False,
    axis: int | str = 2,
    overwrite: bool = False,
    series: Sequence[str | None] | None = None,
    batch_size: int = 16,
    modalities: Sequence[str | None] = (None, None),
    report: Callable[[str], None] | None = None,
) -> list[Path]:
    """Fuse an anatomical and a functional 3D study and write the result (module docstring for the steps).

    Args:
        anatomical, functional: NIfTI / ITK files or DICOM folders (a study folder of several series too).
        output: the NIfTI file (``.nii``/``.nii.gz``), or the DICOM series folder with ``output_format="dicom"``.
        output_format: ``"nifti"`` or ``"dicom"`` (Secondary Capture series, :mod:`mmif_monai.io.dicom_series`).
        method, weights, device: the 2D fusion method (``load_fusion_method``).
        register: False, True/``"rigid"`` or ``"affine"`` (:func:`~mmif_monai.registration.align_volumes`).
        axis: slicing axis, 0/1/2 or ``"axial"``/``"coronal"``/``"sagittal"``.
        overwrite: replace existing outputs.
        series: (anatomical selector, functional selector) for folders holding several series: Modality,
            SeriesDescription or SeriesInstanceUID; None entries pick CT/MR (anatomical) or PT/NM (functional).
        batch_size: slices per network call.
        modalities: (anatomical, functional) modality names overriding the headers; for NIfTI/ITK files, which
            carry none, the anatomical one defaults to CT when the volume reaches -500 (air in HU), else MR, and
            the functional one to PT.
        report: called with one line per step (modalities, alignment metric, timings), e.g. ``print``.

    Returns:
        the written paths: the fused NIfTI file or DICOM folder, three previews, and the transform if registered.

    Raises:
        FileNotFoundError / ValueError naming the file: missing or unreadable input, 4D data, a bad DICOM series,
            two PatientIDs, two frames of reference without ``register``, a PET/SPECT volume in CT's units, fields
            of view that do not overlap, an output that would replace what this program did not write.
            FileExistsError: an output exists and not
            ``overwrite``. Nothing is written in any of these cases.
    """
    say = report or (lambda line: None)
    # wall and process CPU seconds per step: on a shared machine the CPU time is the steadier of the two
    timings: dict[str, tuple[float, float]] = {}
    clock = (time.perf_counter(), time.process_time())

    def lap(step: str) -> None:
        nonlocal clock
        now = (time.perf_counter(), time.process_time())
        timings[step] = (now[0] - clock[0], now[1] - clock[1])
        clock = now

    paths = check_volume_job(anatomical, functional, output, output_format, register, overwrite)
    if isinstance(series, str) or isinstance(modalities, str):
        raise ValueError("series and modalities take a pair: (anatomical, functional); use None for either")
    if len(modalities) != 2 or (series is not None and len(series) != 2):
        raise ValueError("modalities and series take one entry for the anatomical and one for the functional input")
    selectors = tuple(series) if series is not None else (None, None)
    anatomical_volume = load_volume(anatomical, selectors[0], modalities[0], preferred_modalities=("CT", "MR"))
    functional_volume = load_volume(functional, selectors[1], modalities[1], preferred_modalities=FUNCTIONAL_MODALITIES)
    anatomical_modality = _anatomical_modality(anatomical_volume, modalities[0])
    functional_modality = canonical_modality(modalities[1] or modality_from_meta(functional_volume.meta) or "PT")
    _check_pair(anatomical_volume, functional_volume, functional_modality, register)
    functional_volume.meta[MODALITY_KEY] = functional_modality
    lap("load")

    normalise = ModalityNormalize()
    anatomical_norm = normalise(anatomical_volume, modality=anatomical_modality)
    functional_norm = normalise(functional_volume, modality=functional_modality)
    rules = [volume.applied_operations[-1]["extra_info"]["rule"] for volume in (anatomical_norm, functional_norm)]
    say(f"anatomical {anatomical_modality} ({rules[0]}), functional {functional_modality} ({rules[1]})")
    lap("normalise")

    # registration sees the anatomical volume in its own units: a CT window would merge air with fat
    aligned, alignment = align_volumes(anatomical_volume, functional_norm, register=register)
    say(alignment.summary())
    lap("align")

    fuse_fn, description = load_fusion_method(method, weights, device)
    say(f"model: {description}")
    lap("model")
    colour = functional_modality in FUNCTIONAL_MODALITIES
    fused = fuse_volume(fuse_fn, anatomical_norm, aligned, axis, batch_size, colour=colour, device=device)
    lap("fuse")

    previews = preview_slices(fused)
    with staged_outputs(list(paths.values())) as staged:
        targets = dict(zip(paths, staged))
        if output_format == "nifti":
            _write_nifti(fused, targets["fused"])
        else:
            label = f"MMIF fused {anatomical_modality}+{functional_modality} ({method}) DERIVED"
            save_series(fused_series_datasets(fused, anatomical_volume, label), targets["fused"])
        for view, image in previews.items():
            write_image_atomic(image, targets[view])
        if "transform" in targets:
            alignment.save_transform(targets["transform"])
    lap("write")
    total_wall, total_cpu = (sum(t[i] for t in timings.values()) for i in (0, 1))
    steps = ", ".join(f"{step} {wall:.2f} s (cpu {cpu:.2f})" for step, (wall, cpu) in timings.items())
    say(f"timing: {steps}; total {total_wall:.2f} s (cpu {total_cpu:.2f})")
    return list(paths.values())
