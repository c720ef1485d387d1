"""Aligning a functional volume with an anatomical one.

1. **Overlap check**: the two fields of view (voxel grids mapped to world coordinates by their affines) must share
   a reasonable part of the smaller one, or the headers describe different places (another study, a wrong file).
2. **Registration (optional)**: an intensity-based rigid (``Euler3DTransform``, 6 parameters) or affine (12
   parameters) registration with ITK's v4 framework: Mattes mutual information (suited to images whose intensities
   are related but not equal, e.g. CT and PET; Mattes et al., IEEE TMI 2003), regular-step gradient descent with
   parameter scales from physical shifts, and a multi-resolution pyramid (shrink 4, 2, 1 with Gaussian smoothing
   of 2, 1, 0 voxels). The anatomical volume is fixed, the functional one moves; the centre of rotation is the
   anatomical grid's centre and the search starts from the headers' alignment (identity). The result only
   corrects the functional header (its affine), so the functional data is resampled once.
3. **Resampling**: MONAI's ``ResampleToMatch`` puts the functional volume on the anatomical grid through world
   coordinates (orientation, spacing, origin of both affines), trilinear, zero outside the functional field of view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from monai.data.itk_torch_bridge import metatensor_to_itk_image
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import orientation_ras_lps
from monai.transforms import ResampleToMatch

from mmif_monai.io.images import atomic_output
from mmif_monai.io.preflight import registration_requested
from mmif_monai.io.volumes import DICOM_IDENTITY_KEY, volume_name
from mmif_monai.transforms import MODALITY_KEY

__all__ = [
    "REGISTRATION_KINDS",
    "MIN_OVERLAP_FRACTION",
    "RegistrationSettings",
    "AlignmentReport",
    "check_overlap",
    "register_volumes",
    "align_volumes",
]

REGISTRATION_KINDS = ("rigid", "affine")
#: the fields of view must share at least this fraction of the smaller one's world bounding box
MIN_OVERLAP_FRACTION = 0.1
METRIC_NAME = "Mattes mutual information (ITK sign: negative, lower is better)"


@dataclass(frozen=True)
class RegistrationSettings:
    """ITK registration settings; the defaults are those documented in ``docs/volumes.md``."""

    histogram_bins: int = 50
    shrink_factors: Sequence[int] = (4, 2, 1)
    smoothing_sigmas_voxels: Sequence[float] = (2.0, 1.0, 0.0)
    sampling: str = "random"  # how the metric samples fixed voxels while optimising: random, regular or none (all)
    sampling_fraction: float = 0.25  # the fraction sampled (random, regular)
    iterations: int = 200  # per resolution level
    learning_rate: float = 2.0  # initial step, about millimetres once the parameter scales are estimated
    minimum_step: float = 1e-4
    relaxation: float = 0.8  # step shrink on a direction change; 0.5 stalled before the optimum on the phantom
    gradient_tolerance: float = 1e-8
    seed: int = 0


@dataclass
class AlignmentReport:
    """What :func:`align_volumes` did.

    ``matrix`` (4x4, RAS world mm) maps a point of the anatomical volume to the point of the functional header's
    world that lands on it: identity without registration; ITK's fixed-to-moving transform with it.
    """

    kind: str | None
    metric_before: float | None = None
    metric_after: float | None = None
    parameters: tuple[float, ...] = ()
    fixed_parameters: tuple[float, ...] = ()
    matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    overlap_fraction: float = 1.0
    transform: Any = None  # the ITK transform, for saving
    transform_path: Path | None = None

    @property
    def registered(self) -> bool:
        return self.kind is not None

    def summary(self) -> str:
        """One line for people: what was done and how the metric changed."""
        if not self.registered:
            return f"aligned by the headers (world coordinates); fields of view overlap {self.overlap_fraction:.0%}"
        moved = np.linalg.norm(self.matrix[:3, 3])
        return (
            f"{self.kind} registration: {METRIC_NAME} before {self.metric_before:.4f}, after {self.metric_after:.4f}; "
            f"translation {moved:.2f} mm"
        )

    def save_transform(self, path: str | Path) -> Path:
        """Write the ITK transform (fixed anatomical LPS -> moving functional LPS) to ``path`` (``.tfm``, ``.h5``)."""
        if self.transform is None:
            raise ValueError(f"{path}: no registration was run, so there is no transform to save")
        import itk

        path = Path(path)
        with atomic_output(path) as tmp:
            itk.transformwrite([self.transform], str(tmp))
        return path


def _world_box(img: MetaTensor) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box (RAS mm) of a channel-first volume's voxels."""
    shape = np.asarray(img.shape[1:], dtype=np.float64)
    corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in shape], indexing="ij")).reshape(3, -1)
    world = np.asarray(img.affine, dtype=np.float64)[:3, :3] @ corners + np.asarray(img.affine)[:3, 3:4]
    return world.min(axis=1), world.max(axis=1)


def check_overlap(anatomical: MetaTensor, functional: MetaTensor) -> float:
    """The fraction of the smaller field of view that the two share (world bounding boxes).

    Raises:
        ValueError: naming both files when it is below :data:`MIN_OVERLAP_FRACTION`.
    """
    (low_a, high_a), (low_f, high_f) = _world_box(anatomical), _world_box(functional)
    shared = np.prod(np.clip(np.minimum(high_a, high_f) - np.maximum(low_a, low_f), 0.0, None))
    smaller = min(np.prod(high_a - low_a), np.prod(high_f - low_f))
    fraction = float(shared / smaller)
    if fraction < MIN_OVERLAP_FRACTION:
        raise ValueError(
            f"{volume_name(functional)}: its field of view does not overlap that of {volume_name(anatomical)} "
            f"({fraction:.0%} shared, world x/y/z {np.round(low_f, 1).tolist()}..{np.round(high_f, 1).tolist()} mm vs "
            f"{np.round(low_a, 1).tolist()}..{np.round(high_a, 1).tolist()} mm); are they the same patient and study?"
        )
    return fraction


def _to_itk(volume: MetaTensor):
    return metatensor_to_itk_image(cast(MetaTensor, volume[0].float()), channel_dim=None)


def _ras_matrix(transform) -> np.ndarray:
    """4x4 RAS matrix of an ITK matrix-offset transform (which works in LPS)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(transform.GetMatrix())
    lps[:3, 3] = np.asarray(transform.GetOffset())
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip


def _metric_value(metric_type, fixed, moving, transform, bins: int) -> float:
    """The metric over every fixed voxel (no sampling), for a reproducible before/after comparison."""
    metric = metric_type.New()
    metric.SetNumberOfHistogramBins(bins)
    metric.SetFixedImage(fixed)
    metric.SetMovingImage(moving)
    metric.SetMovingTransform(transform)
    metric.Initialize()
    return float(metric.GetValue())


def register_volumes(
    anatomical: MetaTensor, functional: MetaTensor, kind: str = "rigid", settings: RegistrationSettings | None = None
) -> AlignmentReport:
    """Register ``functional`` (moving) to ``anatomical`` (fixed) with ITK; see the module docstring.

    Both are (1, X, Y, Z) ``MetaTensor`` volumes with RAS affines, on any grids.
    """
    import itk  # imported here: loading ITK's registration modules takes seconds, only registration needs them

    if kind not in REGISTRATION_KINDS:
        raise ValueError(f"unknown registration {kind!r}; choose from {', '.join(REGISTRATION_KINDS)}")
    settings = settings or RegistrationSettings()
    fixed, moving = _to_itk(anatomical), _to_itk(functional)
    image_type = type(fixed)
    transform = itk.Euler3DTransform[itk.D].New() if kind == "rigid" else itk.AffineTransform[itk.D, 3].New()
    centre = np.asarray(orientation_ras_lps(np.asarray(anatomical.affine, np.float64))) @ np.append(
        (np.asarray(anatomical.shape[1:], np.float64) - 1) / 2, 1.0
    )
    transform.SetCenter([float(c) for c in centre[:3]])  # the anatomical grid's centre, in ITK's LPS
    identity = transform.Clone()

    metric_type = itk.MattesMutualInformationImageToImageMetricv4[image_type, image_type]
    metric = metric_type.New()
    metric.SetNumberOfHistogramBins(settings.histogram_bins)
    optimizer = itk.RegularStepGradientDescentOptimizerv4[itk.D].New()
    optimizer.SetLearningRate(settings.learning_rate)
    optimizer.SetMinimumStepLength(settings.minimum_step)
    optimizer.SetRelaxationFactor(settings.relaxation)
    optimizer.SetNumberOfIterations(settings.iterations)
    # MI gradients are small (the metric moves by ~1e-3 per degree): ITK's default tolerance, 1e-4, stops too early
    optimizer.SetGradientMagnitudeTolerance(settings.gradient_tolerance)
    scales = itk.RegistrationParameterScalesFromPhysicalShift[metric_type].New()
    scales.SetMetric(metric)
    optimizer.SetScalesEstimator(scales)

    registration = itk.ImageRegistrationMethodv4[image_type, image_type].New()
    registration.SetFixedImage(fixed)
    registration.SetMovingImage(moving)
    registration.SetMetric(metric)
    registration.SetOptimizer(optimizer)
    registration.SetInitialTransform(transform)
    registration.InPlaceOn()
    levels = len(settings.shrink_factors)
    registration.SetNumberOfLevels(levels)
    registration.SetShrinkFactorsPerLevel([int(s) for s in settings.shrink_factors])
    registration.SetSmoothingSigmasPerLevel([float(s) for s in settings.smoothing_sigmas_voxels])
    registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    strategy = getattr(itk.ImageRegistrationMethodv4Enums, f"MetricSamplingStrategy_{settings.sampling.upper()}")
    registration.SetMetricSamplingStrategy(strategy)
    registration.SetMetricSamplingPercentage(settings.sampling_fraction)
    registration.MetricSamplingReinitializeSeed(settings.seed)
    registration.Update()

    bins = settings.histogram_bins
    return AlignmentReport(
        kind=kind,
        metric_before=_metric_value(metric_type, fixed, moving, identity, bins),
        metric_after=_metric_value(metric_type, fixed, moving, transform, bins),
        parameters=tuple(float(p) for p in transform.GetParameters()),
        fixed_parameters=tuple(float(p) for p in transform.GetFixedParameters()),
        matrix=_ras_matrix(transform),
        transform=transform,
    )


def _registration_kind(register: bool | str | None) -> str | None:
    if not registration_requested(register):
        return None
    if register is True:
        return "rigid"
    if register not in REGISTRATION_KINDS:
        raise ValueError(f"unknown registration {register!r}; choose from {', '.join(REGISTRATION_KINDS)}")
    return str(register)


def align_volumes(
    anatomical: MetaTensor,
    functional: MetaTensor,
    register: bool | str = False,
    transform_path: str | Path | None = None,
    settings: RegistrationSettings | None = None,
    mode: str = "bilinear",
) -> tuple[MetaTensor, AlignmentReport]:
    """The functional volume resampled onto the anatomical grid, and what was done.

    Args:
        anatomical: (1, X, Y, Z) with its affine: the target grid (and the fixed image of a registration).
        functional: (C, X', Y', Z') with its affine, on any grid.
        register: False (headers only), True or ``"rigid"``, or ``"affine"``: run :func:`register_volumes` first
            and correct the functional header with its result.
        transform_path: where to save the registration's ITK transform (``.tfm``), if one is run.
        settings: registration settings.
        mode: interpolation (``ResampleToMatch``'s ``mode``; trilinear by default).

    Returns:
        the resampled functional volume (C, X, Y, Z) with the anatomical affine, and an :class:`AlignmentReport`.

    Raises:
        ValueError: the fields of view do not overlap (:func:`check_overlap`), or ``register`` is unknown.
    """
    kind = _registration_kind(register)
    overlap = check_overlap(anatomical, functional)
    report = AlignmentReport(kind=None, overlap_fraction=overlap)
    if kind is not None:
        report = register_volumes(anatomical, cast(MetaTensor, functional[:1]), kind, settings)
        report.overlap_fraction = overlap
        functional = functional.clone()
        # the voxel the header put at world point y truly lies at matrix^-1 y
        functional.affine = torch.as_tensor(np.linalg.inv(report.matrix) @ np.asarray(functional.affine, np.float64))
        if transform_path is not None:
            report.transform_path = report.save_transform(transform_path)
    resample = ResampleToMatch(mode=mode, padding_mode="zeros", dtype=torch.float32)  # type: ignore[arg-type]  # MONAI takes torch dtypes too
    resampled = cast(MetaTensor, resample(functional, anatomical))
    # ResampleToMatch gives the result the anatomical volume's metadata; what says which study and modality the
    # data came from must stay the functional volume's
    for key in (MODALITY_KEY, DICOM_IDENTITY_KEY):
        resampled.meta.pop(key, None)
        if key in functional.meta:
            resampled.meta[key] = functional.meta[key]
    return resampled, report
