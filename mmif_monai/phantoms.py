"""A head phantom built in code: paired anatomical and functional 3D studies for tests, benchmarks and demos.

No paired 3D studies ship with the project, so this module draws one (``mmif phantom`` writes it to files). The
head is defined in world coordinates (RAS, millimetres, origin at the head centre) by ellipsoids: scalp, skull,
cerebrospinal fluid (CSF), a folded grey-matter cortex over white matter, deep grey nuclei, cerebellum, brainstem,
lateral ventricles, eyes, a frontal sinus, a small lesion, nose, neck and cervical spine; the face, neck and
cerebellum break the ellipsoids' symmetry so that rotations show in the images.
Each modality maps these tissue classes to values in its own units and adds its own imaging blur and noise:

========  =====================================================================================================
modality  values
========  =====================================================================================================
CT        Hounsfield units: air -1000, scalp -50, bone 1100, CSF 8, grey 40, white 28, lesion 32; Gaussian PSF
          (sigma 0.5 voxel), noise sd 6 HU; stored as int16.
MR        T1-weighted-like arbitrary units: fat-rich scalp and white matter bright, CSF and bone dark; a smooth
          multiplicative bias field, noise.
PT        FDG-like activity in Bq/mL: body-weight SUV grey 8, white 2.5, lesion 14, CSF 0.3, scalp 0.8, bone 0.4,
          converted with a 370 MBq dose decayed over 1 h of F-18 (half-life 6586.2 s) and a 70 kg patient;
          blurred by a Gaussian PSF of 5 mm FWHM; 5 % multiplicative noise.
========  =====================================================================================================

The tissue values are illustrative choices in the usual ranges of each unit, not measurements.

The functional volume is sampled on another grid (coarser, another field of view, origin and axis order) and
with a known rigid misalignment: its voxel at header position ``x`` shows the tissue at ``R x + t`` (rotation
``R`` about the head centre by ``rotation_deg``, then translation ``t = offset_mm``). A registration of the
functional onto the anatomical volume should therefore find the inverse of :func:`rigid_matrix`.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, PositronEmissionTomographyImageStorage, generate_uid
from scipy.ndimage import gaussian_filter

from mmif_monai.io.dicom_series import save_series, set_pixels, slice_datasets
from mmif_monai.io.preflight import phantom_output_paths

__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_OFFSET_MM",
    "DEFAULT_ROTATION_DEG",
    "Tissue",
    "PhantomFiles",
    "PhantomStudy",
    "rigid_matrix",
    "grid_affine",
    "head_tissues",
    "phantom_volume",
    "write_phantom_nifti",
    "write_phantom_dicom_study",
]

DEFAULT_SHAPE = (64, 64, 64)
DEFAULT_OFFSET_MM = (4.0, -3.0, 5.0)
DEFAULT_ROTATION_DEG = (2.0, -1.5, 3.0)

#: field of view (mm) of the anatomical grid and of the functional grid; both cover the whole head
ANATOMICAL_FOV_MM = (240.0, 240.0, 216.0)
FUNCTIONAL_FOV_MM = (256.0, 256.0, 230.0)
#: the functional grid's voxels are this many times larger than the anatomical grid's (PET is coarser than CT)
FUNCTIONAL_VOXEL_RATIO = 2.0
#: the functional grid's centre is moved by this much (mm): the two grids share no voxel corner
FUNCTIONAL_GRID_SHIFT_MM = (3.3, -4.1, 6.7)


class Tissue:
    """Tissue class labels of :func:`head_tissues`."""

    AIR, SCALP, BONE, CSF, GREY, WHITE, LESION = range(7)


CT_HU = {
    Tissue.AIR: -1000,
    Tissue.SCALP: -50,
    Tissue.BONE: 1100,
    Tissue.CSF: 8,
    Tissue.GREY: 40,
    Tissue.WHITE: 28,
    Tissue.LESION: 32,
}
MR_T1 = {
    Tissue.AIR: 0,
    Tissue.SCALP: 700,
    Tissue.BONE: 60,
    Tissue.CSF: 180,
    Tissue.GREY: 480,
    Tissue.WHITE: 760,
    Tissue.LESION: 400,
}
PET_SUV = {
    Tissue.AIR: 0.0,
    Tissue.SCALP: 0.8,
    Tissue.BONE: 0.4,
    Tissue.CSF: 0.3,
    Tissue.GREY: 8.0,
    Tissue.WHITE: 2.5,
    Tissue.LESION: 14.0,
}

# FDG study constants behind the PET values (and the DICOM PET header, from which SUV is computed back)
PATIENT_WEIGHT_KG = 70.0
INJECTED_DOSE_BQ = 370e6
F18_HALF_LIFE_S = 6586.2
UPTAKE_TIME_S = 3600.0
PET_PSF_FWHM_MM = 5.0
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _bq_per_ml_per_suv() -> float:
    decayed_dose = INJECTED_DOSE_BQ * 2.0 ** (-UPTAKE_TIME_S / F18_HALF_LIFE_S)
    return decayed_dose / (PATIENT_WEIGHT_KG * 1000.0)


@dataclass(frozen=True)
class PhantomFiles:
    """The NIfTI pair written by :func:`write_phantom_nifti` and the misalignment built into it."""

    anatomical: Path
    functional: Path
    offset_mm: tuple[float, ...]
    rotation_deg: tuple[float, ...]

    @property
    def misalignment(self) -> np.ndarray:
        """4x4 RAS matrix from the functional header's world coordinates to the true ones."""
        return rigid_matrix(self.offset_mm, self.rotation_deg)


@dataclass(frozen=True)
class PhantomStudy:
    """The DICOM study written by :func:`write_phantom_dicom_study`: one CT and one PET series folder."""

    ct_dir: Path
    pt_dir: Path
    patient_id: str
    patient_name: str
    study_instance_uid: str
    frame_of_reference_uid: str
    offset_mm: tuple[float, ...]
    rotation_deg: tuple[float, ...] = field(default=DEFAULT_ROTATION_DEG)

    @property
    def misalignment(self) -> np.ndarray:
        """4x4 RAS matrix from the PET header's world coordinates to the true ones."""
        return rigid_matrix(self.offset_mm, self.rotation_deg)


def rigid_matrix(offset_mm: Sequence[float], rotation_deg: Sequence[float]) -> np.ndarray:
    """4x4 matrix ``x -> R x + t``: rotations about the x, then y, then z axis through the origin (the head
    centre) by ``rotation_deg``, then translation by ``offset_mm``."""
    ax, ay, az = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx
    matrix[:3, 3] = offset_mm
    return matrix


_AXIS_DIRECTIONS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def grid_affine(
    shape: Sequence[int], fov_mm: Sequence[float], axcodes: str = "RAS", centre_mm: Sequence[float] = (0, 0, 0)
) -> np.ndarray:
    """RAS affine of a grid of ``shape`` voxels covering ``fov_mm`` (along R-L, A-P, S-I) around ``centre_mm``;
    ``axcodes`` names where each voxel axis points (e.g. ``"LPS"``: i towards the left, j posterior)."""
    affine = np.eye(4)
    for axis, code in enumerate(axcodes.upper()):
        world_axis, sign = _AXIS_DIRECTIONS[code]
        affine[world_axis, axis] = sign * fov_mm[world_axis] / shape[axis]
    affine[:3, 3] = np.asarray(centre_mm, dtype=np.float64) - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def _inside(points: np.ndarray, centre: Sequence[float], semi_axes: Sequence[float]) -> np.ndarray:
    """Normalised ellipsoid radius of each point: < 1 inside."""
    scaled = (points - np.asarray(centre, dtype=np.float32)) / np.asarray(semi_axes, dtype=np.float32)
    return np.sqrt(np.einsum("...i,...i->...", scaled, scaled))


def head_tissues(points: np.ndarray) -> np.ndarray:
    """Tissue label (:class:`Tissue`) at each world point (..., 3) in RAS mm, head centred at the origin."""
    points = np.asarray(points, dtype=np.float32)
    labels = np.full(points.shape[:-1], Tissue.AIR, dtype=np.uint8)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    # folding pattern of the cortex: about 25 mm between gyri
    folds = np.sin(x / 4.0) * np.sin(y / 4.0 + 1.0) * np.sin(z / 4.0 + 2.0)
    labels[_inside(points, (0, 0, 0), (75, 95, 90)) < 1] = Tissue.SCALP
    neck = _inside(points * np.asarray([1, 1, 0], dtype=np.float32), (0, -12, 0), (46, 50, 1)) < 1
    labels[neck & (z < -50)] = Tissue.SCALP  # neck soft tissue below the skull base
    labels[_inside(points, (0, 92, -32), (11, 14, 22)) < 1] = Tissue.SCALP  # nose
    labels[_inside(points, (0, 0, 2), (70, 90, 84)) < 1] = Tissue.BONE
    labels[_inside(points, (0, 0, 2), (64, 84, 78)) < 1] = Tissue.CSF
    brain = _inside(points, (0, 0, 3), (61, 81, 74))
    labels[brain < 1] = Tissue.GREY
    labels[_inside(points, (0, 0, 3), (50, 69, 61)) < 1 + 0.12 * folds] = Tissue.WHITE
    labels[(brain < 1) & (brain > 0.9) & (folds > 0.6)] = Tissue.CSF  # sulci
    labels[_inside(points, (0, -52, -42), (46, 24, 17)) < 1] = Tissue.GREY  # cerebellum
    labels[_inside(points, (0, -18, -38), (9, 10, 24)) < 1] = Tissue.WHITE  # brainstem
    for side in (-1, 1):
        labels[_inside(points, (side * 18, -2, 2), (8, 14, 10)) < 1] = Tissue.GREY  # basal ganglia / thalamus
        labels[_inside(points, (side * 7, 4, 14), (5, 24, 9)) < 1] = Tissue.CSF  # lateral ventricles
        labels[_inside(points, (side * 31, 74, -24), (11, 11, 11)) < 1] = Tissue.CSF  # eyes (vitreous fluid)
    labels[_inside(points, (0, 78, -22), (14, 8, 12)) < 1] = Tissue.AIR  # frontal sinus
    spine = _inside(points * np.asarray([1, 1, 0], dtype=np.float32), (0, -22, 0), (10, 10, 1)) < 1
    labels[spine & (z < -62)] = Tissue.BONE  # cervical spine
    labels[_inside(points, (26, -34, 30), (9, 9, 9)) < 1] = Tissue.LESION
    return labels


def _world_points(affine: np.ndarray, shape: Sequence[int], misalignment: np.ndarray | None) -> np.ndarray:
    """World coordinates (X, Y, Z, 3) of the voxel centres of a grid, mapped by ``misalignment`` if given."""
    matrix = affine if misalignment is None else misalignment @ affine
    index = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij"), axis=-1)
    return index @ matrix[:3, :3].T.astype(np.float32) + matrix[:3, 3].astype(np.float32)


def phantom_volume(
    modality: str,
    affine: np.ndarray,
    shape: Sequence[int],
    misalignment: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The phantom as ``modality`` (``CT``, ``MR`` or ``PT``) images it on the grid (``affine``, ``shape``).

    Returns a float32 (X, Y, Z) array in the modality's units (see the module docstring). ``misalignment``
    (4x4, RAS): the voxel at header position ``x`` shows the tissue at ``misalignment @ x``.
    """
    modality = modality.upper()
    if modality not in ("CT", "MR", "PT"):
        raise ValueError(f"phantom modality must be CT, MR or PT, got {modality!r}")
    rng = np.random.default_rng(seed)
    points = _world_points(affine, shape, misalignment)
    tissues = head_tissues(points)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if modality == "CT":
        values = np.asarray([CT_HU[t] for t in range(7)], dtype=np.float32)[tissues]
        values = gaussian_filter(values, sigma=0.5) + rng.normal(0.0, 6.0, values.shape).astype(np.float32)
        return np.clip(values, -1024, 3071).astype(np.float32)
    if modality == "MR":
        values = np.asarray([MR_T1[t] for t in range(7)], dtype=np.float32)[tissues]
        bias = 1.0 + 0.15 * points[..., 0] / 100.0 - 0.1 * points[..., 2] / 100.0  # coil sensitivity
        values = gaussian_filter(values * bias, sigma=0.5) + rng.normal(0.0, 12.0, values.shape)
        return np.abs(values).astype(np.float32)  # magnitude images are non-negative
    suv = np.asarray([PET_SUV[t] for t in range(7)], dtype=np.float32)[tissues]
    blurred = gaussian_filter(suv, sigma=PET_PSF_FWHM_MM / _FWHM_PER_SIGMA / spacing)
    noisy = blurred * (1.0 + rng.normal(0.0, 0.05, blurred.shape))
    return (np.clip(noisy, 0.0, None) * _bq_per_ml_per_suv()).astype(np.float32)


def _functional_grid(shape: Sequence[int], axcodes: str) -> tuple[np.ndarray, tuple[int, ...]]:
    functional_shape = tuple(max(8, int(round(n / FUNCTIONAL_VOXEL_RATIO))) for n in shape)
    return grid_affine(functional_shape, FUNCTIONAL_FOV_MM, axcodes, FUNCTIONAL_GRID_SHIFT_MM), functional_shape


def write_phantom_nifti(
    folder: str | Path,
    shape: Sequence[int] = DEFAULT_SHAPE,
    offset_mm: Sequence[float] = DEFAULT_OFFSET_MM,
    seed: int = 0,
    rotation_deg: Sequence[float] = DEFAULT_ROTATION_DEG,
    anatomical_modality: str = "CT",
) -> PhantomFiles:
    """Write an anatomical (``ct.nii.gz`` or ``mr.nii.gz``) and a PET (``pet.nii.gz``) phantom into ``folder``.

    The anatomical grid has ``shape`` voxels in RAS axis order over :data:`ANATOMICAL_FOV_MM`; the PET grid
    has half as many voxels per axis over :data:`FUNCTIONAL_FOV_MM`, LAS axis order, a shifted centre, and the
    rigid misalignment ``offset_mm`` / ``rotation_deg`` (module docstring). Values in HU (CT), arbitrary units
    (MR), Bq/mL (PET).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offset, rotation = tuple(float(v) for v in offset_mm), tuple(float(v) for v in rotation_deg)
    anatomical_affine = grid_affine(shape, ANATOMICAL_FOV_MM, "RAS")
    anatomical = phantom_volume(anatomical_modality, anatomical_affine, shape, seed=seed)
    functional_affine, functional_shape = _functional_grid(shape, "LAS")
    functional = phantom_volume("PT", functional_affine, functional_shape, rigid_matrix(offset, rotation), seed + 1)
    anatomical_path, functional_path = phantom_output_paths(folder, "nifti", anatomical_modality)
    stored = anatomical.round().astype(np.int16) if anatomical_modality.upper() == "CT" else anatomical
    pairs = ((stored, anatomical_affine, anatomical_path), (functional, functional_affine, functional_path))
    for data, affine, path in pairs:
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm")
        nib.save(image, path)
    return PhantomFiles(anatomical_path, functional_path, offset, rotation)


def _study_base(patient_id: str, patient_name: str, study_uid: str, frame_uid: str, when: datetime.datetime) -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.PatientName = patient_id, patient_name
    ds.PatientBirthDate, ds.PatientSex, ds.PatientWeight = "19700101", "O", PATIENT_WEIGHT_KG
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = study_uid, frame_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "PHANTOM", ""
    ds.StudyDescription = "Head phantom PET/CT"
    ds.Manufacturer = "mmif-monai phantom"
    ds.PositionReferenceIndicator = ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    return ds


def _int16_slices(volume: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Per-slice int16 pixels and RescaleSlope (as PET scanners store activity), slices along the third axis."""
    pixels, slopes = [], []
    for k in range(volume.shape[2]):
        plane = volume[:, :, k].T  # rows = j, columns = i
        slope = max(float(plane.max()) / 32000.0, 1e-3)
        pixels.append(np.round(plane / slope).astype(np.int16))
        slopes.append(slope)
    return pixels, slopes


def write_phantom_dicom_study(
    folder: str | Path,
    shape: Sequence[int] = DEFAULT_SHAPE,
    patient_id: str = "PHANTOM-001",
    patient_name: str = "Phantom^Head",
    offset_mm: Sequence[float] = DEFAULT_OFFSET_MM,
    rotation_deg: Sequence[float] = DEFAULT_ROTATION_DEG,
    seed: int = 0,
) -> PhantomStudy:
    """Write a PET/CT phantom study as two single-frame DICOM series, ``folder/CT`` and ``folder/PT``.

    One patient, one study, one frame of reference. CT Image Storage: axial slices numbered from the top of the
    head down, int16 with RescaleIntercept -1024 (HU). PET Image Storage: axial slices numbered from the bottom
    up, coarser grid (as :func:`write_phantom_nifti`) with the rigid misalignment, activity in Bq/mL as int16
    with a per-slice RescaleSlope, and the attributes body-weight SUV needs (Units BQML, decay correction START,
    dose, half-life, injection and series times, patient weight).
    """
    folder = Path(folder)
    offset, rotation = tuple(float(v) for v in offset_mm), tuple(float(v) for v in rotation_deg)
    when = datetime.datetime(2024, 1, 15, 10, 0, 0)
    study_uid, frame_uid = generate_uid(), generate_uid()
    base = _study_base(patient_id, patient_name, study_uid, frame_uid, when)

    # DICOM axial convention: rows run to the patient's left, columns posterior (LPS); CT slices head -> feet
    ct_affine = grid_affine(shape, ANATOMICAL_FOV_MM, "LPI")
    ct = phantom_volume("CT", ct_affine, shape, seed=seed)
    ct_base = Dataset()
    ct_base.update(base)
    ct_base.SOPClassUID, ct_base.Modality = CTImageStorage, "CT"
    ct_base.SeriesInstanceUID, ct_base.SeriesNumber = generate_uid(), 2
    ct_base.SeriesDescription, ct_base.SeriesTime = "CT HEAD PHANTOM", when.strftime("%H%M%S")
    ct_base.KVP, ct_base.RescaleIntercept, ct_base.RescaleSlope, ct_base.RescaleType = 120, -1024, 1, "HU"
    ct_datasets = slice_datasets(ct_base, ct_affine, shape[2])
    for k, ds in enumerate(ct_datasets):
        set_pixels(ds, (np.round(ct[:, :, k].T) + 1024).astype(np.uint16))
    ct_dir, pt_dir = phantom_output_paths(folder, "dicom")
    save_series(ct_datasets, ct_dir)

    pet_affine, pet_shape = _functional_grid(shape, "LPS")
    pet = phantom_volume("PT", pet_affine, pet_shape, rigid_matrix(offset, rotation), seed + 1)
    injection = when - datetime.timedelta(seconds=UPTAKE_TIME_S)
    pet_base = Dataset()
    pet_base.update(base)
    pet_base.SOPClassUID, pet_base.Modality = PositronEmissionTomographyImageStorage, "PT"
    pet_base.SeriesInstanceUID, pet_base.SeriesNumber = generate_uid(), 3
    pet_base.SeriesDescription = "PET FDG BRAIN PHANTOM"
    pet_base.SeriesTime = pet_base.AcquisitionTime = when.strftime("%H%M%S")
    pet_base.Units, pet_base.DecayCorrection, pet_base.CorrectedImage = "BQML", "START", ["ATTN", "DECY"]
    pet_base.RescaleIntercept, pet_base.RescaleType = 0, "BQML"
    isotope = Dataset()
    isotope.Radiopharmaceutical = "Fluorodeoxyglucose"
    isotope.RadionuclideTotalDose = INJECTED_DOSE_BQ
    isotope.RadionuclideHalfLife = F18_HALF_LIFE_S
    isotope.RadiopharmaceuticalStartTime = injection.strftime("%H%M%S")
    pet_base.RadiopharmaceuticalInformationSequence = [isotope]
    pet_datasets = slice_datasets(pet_base, pet_affine, pet_shape[2])
    for ds, plane, slope in zip(pet_datasets, *_int16_slices(pet)):
        set_pixels(ds, plane)
        ds.RescaleSlope = f"{slope:.6g}"
    save_series(pet_datasets, pt_dir)
    return PhantomStudy(ct_dir, pt_dir, patient_id, patient_name, study_uid, frame_uid, offset, rotation)
