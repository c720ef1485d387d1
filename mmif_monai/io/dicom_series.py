"""Writing a volume as a DICOM series: slice geometry from a MONAI affine, and the fused-series writer.

A fused volume is written as one **single-frame Secondary Capture** instance per slice along the volume's third
voxel axis (SOP class 1.2.840.10008.5.1.4.1.1.7), 8-bit, ``MONOCHROME2`` for grey and ``RGB`` (pixel-interleaved)
for colour. Secondary Capture does not require the Image Plane module, but each instance carries it
(``ImagePositionPatient``, ``ImageOrientationPatient``, ``PixelSpacing``, ``SliceThickness``) together with the
source's ``FrameOfReferenceUID``, so viewers and MONAI's ``PydicomReader`` place the slices on the anatomical grid.

Geometry: a MONAI ``MetaTensor`` (C, X, Y, Z) has an affine in RAS; DICOM positions are in LPS. Voxel ``(i, j, k)``
is pixel ``(row j, column i)`` of slice ``k``, the layout ``PydicomReader(swap_ij=True)`` reads back.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import orientation_ras_lps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from mmif_monai.io.outputs import FUSED_SERIES_MANUFACTURER, check_output_path, staged_outputs
from mmif_monai.io.volumes import DICOM_IDENTITY_KEY, IDENTITY_KEYWORDS

__all__ = [
    "IDENTITY_KEYWORDS",
    "FUSED_IMAGE_TYPE",
    "slice_datasets",
    "set_pixels",
    "save_series",
    "fused_series_datasets",
    "write_fused_series",
]

#: ImageType (0008,0008) of fused instances: value 1 DERIVED (pixels computed from other images), value 2
#: SECONDARY (created after the examination), value 3 names how (PS3.3 C.7.6.1.1.2 allows implementation terms)
FUSED_IMAGE_TYPE = ("DERIVED", "SECONDARY", "FUSED")

_SERIES_NUMBER = 9001  # fused series sort after the acquired ones in a viewer's series list
_FILE_PATTERN = "IM{:06d}.dcm"


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


def _fused_base(identity: Mapping[str, str], description: str) -> Dataset:
    """Attributes shared by every instance of a new fused series, keeping the source's patient and study."""
    now = datetime.datetime.now()
    ds = Dataset()
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
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        if keyword not in ds:
            setattr(ds, keyword, "")  # type 2 attributes (Patient, General Study modules): present, may be empty
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
    ds.BurnedInAnnotation = "NO"
    ds.Manufacturer = FUSED_SERIES_MANUFACTURER  # how --overwrite knows a series of its own
    return ds


def fused_series_datasets(
    fused: MetaTensor, reference: MetaTensor | None, description: str = "MMIF fused DERIVED"
) -> list[Dataset]:
    """The Secondary Capture instances of a fused (C, X, Y, Z) volume in [0, 1] (C = 1 grey or 3 RGB), in slice
    order, ready for :func:`save_series`; see :func:`write_fused_series` for ``reference`` and ``description``.

    Raises:
        ValueError: ``fused`` is not a (1 | 3, X, Y, Z) volume.
    """
    if fused.dim() != 4 or fused.shape[0] not in (1, 3):
        raise ValueError(f"a fused volume must be (1 or 3, X, Y, Z), got {tuple(fused.shape)}")
    identity = {} if reference is None else reference.meta.get(DICOM_IDENTITY_KEY, {})
    if not re.search(r"\bDERIVED\b", description, flags=re.IGNORECASE):
        description = f"{description} DERIVED"
    pixels = (fused.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    datasets = slice_datasets(_fused_base(identity, description), fused.affine, pixels.shape[-1])
    for k, ds in enumerate(datasets):
        # (C, X, Y) -> (rows = Y, columns = X[, C])
        set_pixels(ds, pixels[0, :, :, k].T if pixels.shape[0] == 1 else pixels[:, :, :, k].transpose(2, 1, 0))
    return datasets


def write_fused_series(
    fused: MetaTensor,
    reference: MetaTensor | None,
    out_dir: str | Path,
    overwrite: bool = False,
    description: str = "MMIF fused DERIVED",
) -> list[Path]:
    """Write a fused (C, X, Y, Z) volume in [0, 1] (C = 1 grey or 3 RGB) as a Secondary Capture series.

    Args:
        fused: the fused volume; its affine places the slices.
        reference: the anatomical volume from :func:`~mmif_monai.io.volumes.load_volume`: a DICOM source's
            PatientID, PatientName, StudyInstanceUID, FrameOfReferenceUID (and the other
            :data:`IDENTITY_KEYWORDS`) are kept; None (or a NIfTI/ITK source) starts a new study and frame of
            reference with empty patient attributes.
        out_dir: the series folder; written complete under a temporary name, then renamed.
        overwrite: replace an existing ``out_dir`` that holds only a fused series written by this program.
        description: SeriesDescription (first 64 characters) and DerivationDescription; "DERIVED" is appended
            when it does not say so.

    Returns:
        the written files, in slice order.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
        ValueError: ``fused`` is not a (1 | 3, X, Y, Z) volume; ``out_dir`` is a file, or holds anything but a
            fused series of ours (:func:`~mmif_monai.io.outputs.check_output_path`).
    """
    out_dir = check_output_path(out_dir, overwrite, kind="series")
    datasets = fused_series_datasets(fused, reference, description)
    with staged_outputs([out_dir]) as (staging,):
        written = save_series(datasets, staging)
    return [out_dir / path.name for path in written]
