"""The 3D fusion job: two studies in, a fused NIfTI file or DICOM series out (``mmif fuse`` on volumes, the
bundle's 3D inference, the MONAI Deploy app).

The steps, each its own function and each timed in the :class:`~mmif_monai.jobs.results.JobResult`:

1. ``load`` (:func:`load_volume_pair`): read both volumes (NIfTI, ITK formats, DICOM series), settle their
   modalities and refuse pairs that would fuse silently wrong (two patients, two frames of reference without
   registration, swapped inputs, constant images).
2. ``normalise`` (:func:`normalise_pair`): each volume from its real units on its own grid
   (:class:`~mmif_monai.transforms.ModalityNormalize`: CT Hounsfield window, MR percentiles, PET/SPECT SUV where the
   DICOM header allows it, else percentiles).
3. ``align`` (:func:`align_pair`): the functional volume onto the anatomical grid
   (:func:`~mmif_monai.registration.align_volumes`, optionally registering first).
4. ``model``, then ``fuse`` (:func:`fuse_pair`): slice by slice along one axis, in batches, a PET/SPECT volume
   coloured with :data:`~mmif_monai.fusion.volumes.PET_COLORMAP` (:func:`~mmif_monai.fusion.volumes.fuse_volume`).
5. ``write``: NIfTI or a DICOM series, three orthogonal PNG previews and, after a registration, the ITK transform.

Every input and output path is checked before anything is read, and all outputs are written under temporary names
and renamed at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from monai.data import NibabelWriter
from monai.data.meta_tensor import MetaTensor

from mmif_monai.deploy.selection import ANATOMICAL, FUNCTIONAL
from mmif_monai.fusion.engines import engine_line
from mmif_monai.fusion.methods import load_fusion_method
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.fusion.volumes import fuse_volume, preview_slices, resolve_axis
from mmif_monai.io.dicom_series import SourceSeries, fused_series_datasets, save_series
from mmif_monai.io.images import check_not_constant, warn_if_nearly_empty, write_image_atomic
from mmif_monai.io.outputs import staged_outputs
from mmif_monai.io.preflight import SLICE_BATCH, check_volume_job, registration_requested
from mmif_monai.io.volumes import (
    DICOM_IDENTITY_KEY,
    PATIENT_KEYWORDS,
    find_dicom_series,
    load_volume,
    patient_key,
    volume_name,
)
from mmif_monai.jobs.results import JobResult
from mmif_monai.registration import AlignmentReport, align_volumes
from mmif_monai.transforms import (
    FUNCTIONAL_MODALITIES,
    MODALITY_KEY,
    ModalityNormalize,
    canonical_modality,
    check_anatomical_modality,
    modality_from_meta,
)

__all__ = [
    "VolumePair",
    "load_volume_pair",
    "series_line",
    "normalise_pair",
    "align_pair",
    "FusedVolume",
    "fuse_pair",
    "source_series",
    "write_nifti",
    "fuse_volume_files",
]

# a NIfTI/ITK anatomical volume without a modality is taken for CT when it reaches this far into air's HU
_CT_AIR_HU = -500.0


@dataclass(frozen=True)
class VolumePair:
    """The two volumes of a 3D job and their modalities (canonical: ``CT``, ``MR``, ``PT``, ``NM``).

    As loaded, both are in their own units on their own grids; after :func:`normalise_pair` in [0, 1]; after
    :func:`align_pair` the functional one is on the anatomical grid. The anatomical volume's meta keeps the DICOM
    identity that the fused series inherits.
    """

    anatomical: MetaTensor
    functional: MetaTensor
    anatomical_modality: str
    functional_modality: str

    @property
    def colour(self) -> bool:
        """Whether the fused image is in colour: a PET/SPECT functional volume is shown through a colour map."""
        return self.functional_modality in FUNCTIONAL_MODALITIES

    def series_label(self, method: str) -> str:
        """The fused series' description, e.g. ``MMIF fused CT+PT (mmif-net) DERIVED``."""
        return f"MMIF fused {self.anatomical_modality}+{self.functional_modality} ({method}) DERIVED"


def _identity(volume: MetaTensor) -> dict:
    return volume.meta.get(DICOM_IDENTITY_KEY, {})


def _anatomical_modality(volume: MetaTensor, given: str | None) -> str:
    if given is not None:
        return canonical_modality(given)
    recorded = modality_from_meta(volume.meta)
    if recorded is not None:
        return canonical_modality(recorded)
    return "CT" if float(volume.min()) <= _CT_AIR_HU else "MR"


def _check_pair(pair: VolumePair, register: bool | str) -> None:
    """Refuse pairs that would fuse silently wrong, and warn of a nearly empty volume; messages name the series,
    never their identifiers."""
    anatomical, functional = pair.anatomical, pair.functional
    a_name, f_name = volume_name(anatomical), volume_name(functional)
    patients = [patient_key(_identity(volume)) for volume in (anatomical, functional)]
    for keyword, a_value, f_value in zip(PATIENT_KEYWORDS, *patients):
        if a_value and f_value and a_value != f_value:  # an attribute one side lacks (anonymised) does not count
            raise ValueError(f"{f_name}: its {keyword} differs from that of {a_name}; refusing to fuse two patients")
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
        warn_if_nearly_empty(volume, volume_name(volume))
    check_anatomical_modality(anatomical.meta, a_name)
    if pair.colour and float(functional.min()) <= _CT_AIR_HU:
        # activity and SUV are never negative: values down in air's Hounsfield units are a CT
        raise ValueError(
            f"{f_name}: a {pair.functional_modality} volume reaching {float(functional.min()):.0f} looks like CT in "
            "Hounsfield units; are --anatomical and --functional swapped? (--modalities overrides)"
        )


def load_volume_pair(
    anatomical: str | Path,
    functional: str | Path,
    series: Sequence[str | None] | None = None,
    modalities: Sequence[str | None] = (None, None),
    register: bool | str = False,
) -> VolumePair:
    """Step ``load``: both volumes in their own units, their modalities, and the pair's checks.

    ``series`` and ``modalities`` as in :func:`fuse_volume_files`; ``register`` is asked for because two frames of
    reference are refused without it.
    """
    if isinstance(series, str) or isinstance(modalities, str):
        raise ValueError("series and modalities take a pair: (anatomical, functional); use None for either")
    if len(modalities) != 2 or (series is not None and len(series) != 2):
        raise ValueError("modalities and series take one entry for the anatomical and one for the functional input")
    selectors = tuple(series) if series is not None else (None, None)
    anatomical_volume = load_volume(anatomical, selectors[0], modalities[0], role=ANATOMICAL)
    chosen = _identity(anatomical_volume).get("SeriesInstanceUID")  # a study folder's functional series is another
    functional_volume = load_volume(functional, selectors[1], modalities[1], role=FUNCTIONAL, exclude_uid=chosen)
    functional_modality = canonical_modality(modalities[1] or modality_from_meta(functional_volume.meta) or "PT")
    functional_volume.meta[MODALITY_KEY] = functional_modality
    pair = VolumePair(
        anatomical_volume,
        functional_volume,
        _anatomical_modality(anatomical_volume, modalities[0]),
        functional_modality,
    )
    _check_pair(pair, register)
    return pair


def series_line(pair: VolumePair) -> str:
    """Which DICOM series the pair was loaded from, for the job's notes (empty for NIfTI/ITK files), e.g.
    ``series: anatomical CT 'CT HEAD' (STUDY/CT), functional PT 'PET FDG' (STUDY/PT)``."""
    loaded = [
        f"{role} {identity.get('Modality', '?')} {identity.get('SeriesDescription', '')!r} ({volume_name(volume)})"
        for role, volume in ((ANATOMICAL, pair.anatomical), (FUNCTIONAL, pair.functional))
        if "SeriesInstanceUID" in (identity := _identity(volume))
    ]
    return f"series: {', '.join(loaded)}" if loaded else ""


def normalise_pair(pair: VolumePair) -> tuple[VolumePair, str]:
    """Step ``normalise``: each volume in [0, 1] from its own units, and a line naming the rule used for each."""
    normalise = ModalityNormalize()
    anatomical = normalise(pair.anatomical, modality=pair.anatomical_modality)
    functional = normalise(pair.functional, modality=pair.functional_modality)
    rules = [volume.applied_operations[-1]["extra_info"]["rule"] for volume in (anatomical, functional)]
    line = f"anatomical {pair.anatomical_modality} ({rules[0]}), functional {pair.functional_modality} ({rules[1]})"
    return replace(pair, anatomical=anatomical, functional=functional), line


def align_pair(
    loaded: VolumePair, normalised: VolumePair, register: bool | str = False
) -> tuple[VolumePair, AlignmentReport]:
    """Step ``align``: the normalised functional volume on the anatomical grid.

    The registration, when asked for, sees the anatomical volume as loaded, in its own units: a CT window would
    merge air with fat.
    """
    aligned, report = align_volumes(loaded.anatomical, normalised.functional, register=register)
    return replace(normalised, functional=aligned), report


class FusedVolume(NamedTuple):
    """The ``fuse`` step's result: the fused volume and how many slices it was fused as."""

    volume: MetaTensor
    slices: int


def fuse_pair(
    fuse_fn: FuseFn,
    aligned: VolumePair,
    axis: int | str = 2,
    batch_size: int = SLICE_BATCH,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> FusedVolume:
    """Step ``fuse``: the aligned pair slice by slice (:func:`~mmif_monai.fusion.volumes.fuse_volume`), in colour
    for a PET/SPECT functional volume."""
    voxel_axis = resolve_axis(axis, aligned.anatomical.affine)
    fused = fuse_volume(
        fuse_fn,
        aligned.anatomical,
        aligned.functional,
        voxel_axis,
        batch_size,
        aligned.colour,
        device=device,
        progress=progress,
    )
    return FusedVolume(fused, int(fused.shape[1 + voxel_axis]))


def source_series(
    inputs: Sequence[str | Path], loaded: VolumePair, alignment: AlignmentReport
) -> tuple[SourceSeries, ...]:
    """The DICOM series among the job's ``inputs`` (anatomical, functional) that the fused series references,
    found again by the SeriesInstanceUID each volume was loaded from; NIfTI/ITK inputs have none to reference."""
    sources = []
    for path, volume, to_source in zip(inputs, (loaded.anatomical, loaded.functional), (None, alignment.matrix)):
        if Path(path).is_dir():
            uid = volume.meta[DICOM_IDENTITY_KEY]["SeriesInstanceUID"]
            (series,) = (s for s in find_dicom_series(path) if s.uid == uid)
            sources.append(SourceSeries.from_datasets(series.headers, to_source=to_source))
    return tuple(sources)


def write_nifti(fused: MetaTensor, path: str | Path) -> None:
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
    batch_size: int = SLICE_BATCH,
    modalities: Sequence[str | None] = (None, None),
    report: Callable[[str], None] | None = None,
    progress: bool = False,
    engine: str = "auto",
) -> JobResult:
    """Fuse an anatomical and a functional 3D study and write the result (module docstring for the steps).

    Args:
        anatomical, functional: NIfTI / ITK files or DICOM folders (a study folder of several series too).
        output: the NIfTI file (``.nii``/``.nii.gz``), or the DICOM series folder with ``output_format="dicom"``.
        output_format: ``"nifti"`` or ``"dicom"`` (Secondary Capture series, :mod:`mmif_monai.io.dicom_series`).
        method, weights, device, engine: the 2D fusion method (``load_fusion_method``) and what runs the network
            (``auto``: the faster ONNX runtime on the CPU, torch on a GPU; :mod:`mmif_monai.fusion.engines`).
        register: False, True/``"rigid"`` or ``"affine"`` (:func:`~mmif_monai.registration.align_volumes`).
        axis: slicing axis, 0/1/2 or ``"axial"``/``"coronal"``/``"sagittal"``.
        overwrite: replace existing outputs.
        series: (anatomical selector, functional selector) for folders holding several series (a study folder, its
            series in it or in subfolders): Modality, SeriesDescription or SeriesInstanceUID; None entries pick by
            the Deploy app's series rules (CT, else MR as anatomical; PT or NM, else another MR as functional).
        batch_size: slices per network call.
        modalities: (anatomical, functional) modality names overriding the headers; for NIfTI/ITK files, which
            carry none, the anatomical one defaults to CT when the volume reaches -500 (air in HU), else MR, and
            the functional one to PT.
        report: called with each note as it is made (modalities, alignment, model, engine), e.g. ``print``.
        progress: a progress bar over the slices (on a terminal only).

    Returns:
        the job's result: ``outputs`` are the fused NIfTI file or DICOM folder, three previews, and the transform
        if registered; ``timings`` has the steps ``load``, ``normalise``, ``align``, ``model``, ``fuse``, ``write``.

    Raises:
        FileNotFoundError / ValueError naming the file: missing or unreadable input, 4D data, a bad DICOM series,
            two patients (PatientID, PatientName or PatientBirthDate), two frames of reference without
            ``register``, a PET/SPECT volume in CT's units, fields of view that do not overlap, an output that would
            replace what this program did not write.
            FileExistsError: an output exists and not ``overwrite``. Nothing is written in any of these cases.
    """
    result = JobResult(unit="slice", report=report)
    with result.step("load"):
        paths = check_volume_job(anatomical, functional, output, output_format, register, overwrite)
        loaded = load_volume_pair(anatomical, functional, series, modalities, register)
    if series_line(loaded):
        result.note(series_line(loaded))
    with result.step("normalise"):
        normalised, rules = normalise_pair(loaded)
    result.note(rules)
    with result.step("align"):
        aligned, alignment = align_pair(loaded, normalised, register)
    result.note(alignment.summary())
    with result.step("model"):
        fuse_fn, description = load_fusion_method(method, weights, device, engine, report=result.note)
    result.note(f"model: {description}")
    if line := engine_line(fuse_fn, device):
        result.note(f"engine: {line}")
    with result.step("fuse"):
        fused, result.count = fuse_pair(fuse_fn, aligned, axis, batch_size, device, progress)
    with result.step("write"):
        previews = preview_slices(fused)
        with staged_outputs(list(paths.values()), overwrite) as staged:
            targets = dict(zip(paths, staged))
            if output_format == "nifti":
                write_nifti(fused, targets["fused"])
            else:
                sources = source_series((anatomical, functional), loaded, alignment)
                datasets = fused_series_datasets(fused, loaded.anatomical, aligned.series_label(method), sources)
                save_series(datasets, targets["fused"])
            for view, image in previews.items():
                write_image_atomic(image, targets[view])
            if "transform" in targets:
                alignment.save_transform(targets["transform"])
    result.outputs = list(paths.values())
    result.note(result.timing_line())
    return result
