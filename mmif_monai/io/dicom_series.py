"""Writing a volume as a DICOM series: slice geometry from a MONAI affine, and the fused-series writer.

A fused volume is written as one **single-frame Secondary Capture** instance per slice along the volume's third
voxel axis (SOP class 1.2.840.10008.5.1.4.1.1.7), 8-bit, ``MONOCHROME2`` for grey and ``RGB`` (pixel-interleaved)
for colour. Secondary Capture does not require the Image Plane module, but each instance carries it
(``ImagePositionPatient``, ``ImageOrientationPatient``, ``PixelSpacing``, ``SliceThickness``) together with the
source's ``FrameOfReferenceUID``, so viewers and MONAI's ``PydicomReader`` place the slices on the anatomical grid.
Given its sources (:class:`SourceSeries`), each instance also references the source images it was computed from
(``SourceImageSequence``, ``ReferencedSeriesSequence``; :func:`fused_series_datasets`).

The writer is pydicom, not highdicom's ``SCImage``: highdicom is only in the ``[deploy]`` extra while ``mmif fuse
--format dicom`` writes these series from the base install, and ``SCImage`` fixes ImageType and ConversionType
and writes none of the Image Plane, Frame of Reference and reference attributes this series needs.

Geometry: a MONAI ``MetaTensor`` (C, X, Y, Z) has an affine in RAS; DICOM positions are in LPS. Voxel ``(i, j, k)``
is pixel ``(row j, column i)`` of slice ``k``, the layout ``PydicomReader(swap_ij=True)`` reads back.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import orientation_ras_lps
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import Code, codes
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from mmif_monai.io.outputs import FUSED_SERIES_MANUFACTURER, check_output_path, staged_outputs
from mmif_monai.io.volumes import DICOM_IDENTITY_KEY, IDENTITY_KEYWORDS

__all__ = [
    "IDENTITY_KEYWORDS",
    "FUSED_IMAGE_TYPE",
    "DERIVATION_CODE",
    "SOURCE_PURPOSE_CODE",
    "SourceSeries",
    "patient_orientation",
    "slice_datasets",
    "set_pixels",
    "save_series",
    "fused_series_datasets",
    "write_fused_series",
]

#: ImageType (0008,0008) of fused instances: value 1 DERIVED (pixels computed from other images), value 2
#: SECONDARY (created after the examination), value 3 names how (PS3.3 C.7.6.1.1.2 allows implementation terms)
FUSED_IMAGE_TYPE = ("DERIVED", "SECONDARY", "FUSED")
#: DerivationCodeSequence (0008,9215) of fused instances, from CID 7203 "Image Derivation": the functional series is
#: resampled onto the anatomical grid. CID 7203 has no code for fusing two images; DerivationDescription says how.
DERIVATION_CODE: Code = codes.DCM.SpatialResampling  # (113085, DCM)
#: PurposeOfReferenceCodeSequence of each SourceImageSequence item, from CID 7202 "Source Image Purposes of Reference"
SOURCE_PURPOSE_CODE: Code = codes.DCM.SourceImageForImageProcessingOperation  # (121322, DCM)

_SERIES_NUMBER = 9001  # fused series sort after the acquired ones in a viewer's series list
_FILE_PATTERN = "IM{:06d}.dcm"
# attributes of the anatomical source's first header (in a DICOM volume's meta) that its fused series repeats
_SOURCE_HEADER_KEYWORDS = ("SpecificCharacterSet", "BodyPartExamined", "Laterality", "PositionReferenceIndicator")
# a direction cosine under this is rounding in ImageOrientationPatient, not an obliquity PatientOrientation names
_OBLIQUE_COSINE = 1e-3
# PatientOrientation letters of the LPS axes, for a positive and a negative direction (PS3.3 C.7.6.1.1.1)
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _ds_number(value: float | np.floating) -> str:
    """A decimal string (VR DS allows at most 16 characters) with enough digits for sub-micrometre geometry."""
    return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1e9 else f"{value:.8g}"


def slice_datasets(base: Dataset, affine: np.ndarray | torch.Tensor, n_slices: int) -> list[Dataset]:
    """One copy of ``base`` per slice along the third voxel axis, with geometry, ``InstanceNumber`` and a new
    ``SOPInstanceUID``; pixel data is set separately (:func:`set_pixels`).

    Args:
        base: attributes every instance shares (identity, series, SOP class).
        affine: the volume's 4x4 RAS affine (voxel index -> world mm), as MONAI readers give it.
        n_slices: the size of the third voxel axis.
    """
    lps = np.asarray(orientation_ras_lps(np.asarray(affine, dtype=np.float64)))
    column_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    orientation = [*_unit(column_step), *_unit(row_step)]  # direction along a row, then down a column
    spacing = [np.linalg.norm(row_step), np.linalg.norm(column_step)]  # between rows, between columns
    thickness = abs(float(np.dot(slice_step, np.cross(orientation[:3], orientation[3:]))))
    datasets = []
    for k in range(n_slices):
        ds = Dataset()
        ds.update(base)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds_number(v) for v in lps[:3, 3] + k * slice_step]
        ds.ImageOrientationPatient = [_ds_number(v) for v in orientation]
        ds.PixelSpacing = [_ds_number(v) for v in spacing]
        ds.SliceThickness = _ds_number(thickness)
        ds.SpacingBetweenSlices = _ds_number(float(np.linalg.norm(slice_step)))
        datasets.append(ds)
    return datasets


def set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Set the Image Pixel module of ``ds`` from a (rows, columns) grey or (rows, columns, 3) RGB array
    of dtype uint8, uint16 or int16."""
    if pixels.dtype not in (np.uint8, np.uint16, np.int16):
        raise ValueError(f"DICOM pixels must be uint8, uint16 or int16, got {pixels.dtype}")
    colour = pixels.ndim == 3
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape[:2])
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0  # R, G, B of one pixel next to each other, as the array is laid out
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype == np.int16)
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()


def save_series(datasets: Sequence[Dataset], folder: str | Path) -> list[Path]:
    """Write each dataset as a DICOM Part 10 file (explicit VR little endian) ``IM000001.dcm``... in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets, start=1):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / _FILE_PATTERN.format(index)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def patient_orientation(image_orientation: Sequence[float]) -> list[str]:
    """PatientOrientation (0020,0020) of an image with ImageOrientationPatient ``image_orientation`` (LPS): the
    patient directions along a row and down a column, e.g. ``["L", "P"]`` for an axial slice; an oblique direction
    has up to three letters, the principal one first (PS3.3 C.7.6.1.1.1)."""
    values = []
    for direction in (np.asarray(image_orientation[:3], float), np.asarray(image_orientation[3:], float)):
        order = np.argsort(-np.abs(direction), kind="stable")
        values.append(
            "".join(
                _AXIS_LETTERS[axis][int(direction[axis] < 0)]
                for axis in order
                if abs(direction[axis]) > _OBLIQUE_COSINE
            )
        )
    return values


@dataclass(frozen=True, eq=False)  # compared by identity: the arrays have no single truth value
class SourceSeries:
    """A series a derived series was computed from, for its references (:func:`fused_series_datasets`).

    Attributes:
        study_instance_uid, series_instance_uid: the series' study and series.
        instances: ``(SOPClassUID, SOPInstanceUID)`` of each image.
        positions: each image's position along the slice normal (mm), in the order of ``instances``.
        normal: the unit slice normal (LPS).
        spacing: the distance between neighbouring slices (mm).
        to_source: 4x4 RAS matrix from a point of the derived volume to the point of this series' header world
            whose value it shows: identity, or a registration's
            :attr:`~mmif_monai.registration.AlignmentReport.matrix`.
    """

    study_instance_uid: str
    series_instance_uid: str
    instances: tuple[tuple[str, str], ...]
    positions: np.ndarray
    normal: np.ndarray
    spacing: float
    to_source: np.ndarray

    @classmethod
    def from_datasets(cls, datasets: Sequence[Dataset], to_source: np.ndarray | None = None) -> SourceSeries:
        """The series of ``datasets``, the headers of its single-frame images (pixel data is not read);
        ``to_source`` as the attribute, None for the identity.

        Raises:
            ValueError: fewer than two images, or images of several series.
        """
        if len(datasets) < 2 or len({str(ds.SeriesInstanceUID) for ds in datasets}) != 1:
            raise ValueError("a source series needs two or more images of one SeriesInstanceUID")
        orientation = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
        normal = np.cross(orientation[:3], orientation[3:])
        positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in datasets]) @ normal
        return cls(
            study_instance_uid=str(datasets[0].StudyInstanceUID),
            series_instance_uid=str(datasets[0].SeriesInstanceUID),
            instances=tuple((str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in datasets),
            positions=positions,
            normal=normal,
            spacing=float(np.median(np.diff(np.sort(positions)))),
            to_source=np.eye(4) if to_source is None else np.asarray(to_source, dtype=np.float64),
        )

    def instances_sampled(self, corners: np.ndarray) -> list[tuple[str, str]]:
        """The images that linear resampling reads for a derived image with these corner points (N, 3; RAS, the
        derived volume's world): those closer than one slice spacing to its plane, mapped into this series' world.
        An image on the plane (the same grid) is the only one; a plane outside the series references none."""
        points = np.c_[corners, np.ones(len(corners))] @ self.to_source.T
        depths = (points[:, :3] * (-1, -1, 1)) @ self.normal  # RAS -> LPS, then along the normal
        # a neighbour one spacing away has zero weight, and one weighed under 1e-3 would not show in 8 bits
        reach = self.spacing * (1 - 1e-3)
        near = (self.positions > depths.min() - reach) & (self.positions < depths.max() + reach)
        return [instance for instance, used in zip(self.instances, near) if used]


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def _referenced_series(series_uid: str, instances: Sequence[tuple[str, str]]) -> Dataset:
    item = Dataset()
    item.SeriesInstanceUID = series_uid
    item.ReferencedInstanceSequence = []
    for sop_class, sop_instance in instances:
        reference = Dataset()
        reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = sop_class, sop_instance
        item.ReferencedInstanceSequence.append(reference)
    return item


def _add_references(ds: Dataset, corners: np.ndarray, sources: Sequence[SourceSeries]) -> None:
    """The General Reference module's SourceImageSequence and the Common Instance Reference module of one fused
    image (PS3.3 C.12.4, C.12.2): the source images it was computed from, by series, and by study for a series of
    another study than the fused one."""
    images: list[Dataset] = []
    series_by_study: dict[str, list[Dataset]] = {}
    for source in sources:
        instances = source.instances_sampled(corners)
        if not instances:
            continue
        for sop_class, sop_instance in instances:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
            item.PurposeOfReferenceCodeSequence = [_code_item(SOURCE_PURPOSE_CODE)]
            images.append(item)
        series = series_by_study.setdefault(source.study_instance_uid, [])
        series.append(_referenced_series(source.series_instance_uid, instances))
    if images:
        ds.SourceImageSequence = images
    own_study = series_by_study.pop(str(ds.StudyInstanceUID), [])
    if own_study:  # Type 1C: present when instances of the same study are referenced
        ds.ReferencedSeriesSequence = own_study
    if series_by_study:
        ds.StudiesContainingOtherReferencedInstancesSequence = []
        for study_uid, series in series_by_study.items():
            study = Dataset()
            study.StudyInstanceUID, study.ReferencedSeriesSequence = study_uid, series
            ds.StudiesContainingOtherReferencedInstancesSequence.append(study)


def _source_header(reference: MetaTensor | None) -> Dataset:
    """The :data:`_SOURCE_HEADER_KEYWORDS` of a DICOM reference volume's first header, as far as it has them."""
    meta = {} if reference is None else reference.meta
    tags = (f"{tag_for_keyword(keyword):08X}" for keyword in _SOURCE_HEADER_KEYWORDS)
    # only these tags: the rest of a full header may hold values from_json cannot parse
    return Dataset.from_json({tag: meta[tag] for tag in tags if isinstance(meta.get(tag), Mapping)})


def _fused_base(identity: Mapping[str, str], header: Dataset, description: str) -> Dataset:
    """Attributes shared by every instance of a new fused series, keeping the source's patient, study and body part
    (``header``: :func:`_source_header`)."""
    now = datetime.datetime.now()
    ds = Dataset()
    ds.update(header)
    if "BodyPartExamined" not in ds and "Laterality" not in ds:
        ds.Laterality = ""  # Type 2C, needed for a paired body part: whether it is one is unknown
    for keyword in IDENTITY_KEYWORDS:
        if identity.get(keyword) not in (None, ""):
            setattr(ds, keyword, identity[keyword])
    if "StudyInstanceUID" not in ds:  # a NIfTI source has no study: the fused series starts one
        ds.StudyInstanceUID = generate_uid()
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = generate_uid()
    for keyword in (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
        "PositionReferenceIndicator",
    ):
        if keyword not in ds:
            # type 2 attributes (Patient, General Study, Frame of Reference modules): present, may be empty
            setattr(ds, keyword, "")
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "OT"  # "other": a fusion is neither of its sources' modalities
    ds.ConversionType = "WSD"  # workstation (SC Equipment module)
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = _SERIES_NUMBER
    ds.SeriesDescription = description[:64]
    ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = list(FUSED_IMAGE_TYPE)
    ds.DerivationDescription = description[:1024]
    ds.DerivationCodeSequence = [_code_item(DERIVATION_CODE)]
    ds.BurnedInAnnotation = "NO"
    ds.Manufacturer = FUSED_SERIES_MANUFACTURER  # how --overwrite knows a series of its own
    return ds


def fused_series_datasets(
    fused: MetaTensor,
    reference: MetaTensor | None,
    description: str = "MMIF fused DERIVED",
    sources: Sequence[SourceSeries] = (),
) -> list[Dataset]:
    """The Secondary Capture instances of a fused (C, X, Y, Z) volume in [0, 1] (C = 1 grey or 3 RGB), in slice
    order, ready for :func:`save_series`; see :func:`write_fused_series` for the arguments.

    Raises:
        ValueError: ``fused`` is not a (1 | 3, X, Y, Z) volume.
    """
    if fused.dim() != 4 or fused.shape[0] not in (1, 3):
        raise ValueError(f"a fused volume must be (1 or 3, X, Y, Z), got {tuple(fused.shape)}")
    identity = {} if reference is None else reference.meta.get(DICOM_IDENTITY_KEY, {})
    if not re.search(r"\bDERIVED\b", description, flags=re.IGNORECASE):
        description = f"{description} DERIVED"
    pixels = (fused.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    base = _fused_base(identity, _source_header(reference), description)
    datasets = slice_datasets(base, fused.affine, pixels.shape[-1])
    affine = np.asarray(fused.affine, dtype=np.float64)
    last_column, last_row = fused.shape[1] - 1, fused.shape[2] - 1
    for k, ds in enumerate(datasets):
        # (C, X, Y) -> (rows = Y, columns = X[, C])
        set_pixels(ds, pixels[0, :, :, k].T if pixels.shape[0] == 1 else pixels[:, :, :, k].transpose(2, 1, 0))
        # Type 2C in the General Image module: Secondary Capture does not require the Image Plane module
        ds.PatientOrientation = patient_orientation([float(v) for v in ds.ImageOrientationPatient])
        if sources:
            corners = [(i, j, k, 1) for i in (0, last_column) for j in (0, last_row)]
            _add_references(ds, (np.asarray(corners, dtype=np.float64) @ affine.T)[:, :3], sources)
    return datasets


def write_fused_series(
    fused: MetaTensor,
    reference: MetaTensor | None,
    out_dir: str | Path,
    overwrite: bool = False,
    description: str = "MMIF fused DERIVED",
    sources: Sequence[SourceSeries] = (),
) -> list[Path]:
    """Write a fused (C, X, Y, Z) volume in [0, 1] (C = 1 grey or 3 RGB) as a Secondary Capture series.

    Args:
        fused: the fused volume; its affine places the slices.
        reference: the anatomical volume from :func:`~mmif_monai.io.volumes.load_volume`: a DICOM source's
            PatientID, PatientName, StudyInstanceUID, FrameOfReferenceUID (and the other
            :data:`IDENTITY_KEYWORDS`) are kept, and from its first header SpecificCharacterSet,
            BodyPartExamined, Laterality and PositionReferenceIndicator; None (or a NIfTI/ITK source) starts a new
            study and frame of reference with empty patient attributes.
        out_dir: the series folder; written complete under a temporary name, then renamed.
        overwrite: replace an existing ``out_dir`` that holds only a fused series written by this program.
        description: SeriesDescription (first 64 characters) and DerivationDescription; "DERIVED" is appended
            when it does not say so.
        sources: the series the fused volume was computed from (the anatomical and the functional one); each
            instance then references the source images on its plane or within one slice spacing of it
            (SourceImageSequence, ReferencedSeriesSequence). Empty: no references.

    Returns:
        the written files, in slice order.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False (also when it appeared while this was
            writing: the series never replaces another run's).
        ValueError: ``fused`` is not a (1 | 3, X, Y, Z) volume; ``out_dir`` is a file, or holds anything but a
            fused series of ours (:func:`~mmif_monai.io.outputs.check_output_path`).
    """
    out_dir = check_output_path(out_dir, overwrite, kind="series")
    datasets = fused_series_datasets(fused, reference, description, sources)
    with staged_outputs([out_dir], overwrite) as (staging,):
        written = save_series(datasets, staging)
    return [out_dir / path.name for path in written]
