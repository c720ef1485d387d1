"""Loading 3D clinical volumes (NIfTI, ITK formats, DICOM series) with checks.

Every volume comes back as a ``MetaTensor`` (1, X, Y, Z) with its RAS affine, through MONAI's readers
(:class:`~mmif_monai.transforms.loading.LoadModality`: ``NibabelReader`` for NIfTI, ``ITKReader`` for
``.mha .mhd .nrrd .nhdr``, both refusing compressed data that fails its checksum, ``PydicomReader`` for DICOM).
For a DICOM folder the headers are scanned first with pydicom, so that a study folder holding several series (in
it or in its subfolders) can be narrowed to one (``series=`` a Modality, SeriesDescription or SeriesInstanceUID;
without it, the Deploy app's series rules for the input's role), and so that a series MONAI would stack wrongly
is refused with a message naming the folder: mixed patients, mixed orientations or sizes, several images at one
position (4D), gaps (missing slices), uneven spacing.
"""

from __future__ import annotations

import errno
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import PydicomReader
from monai.data.meta_tensor import MetaTensor
from monai.utils import ImageMetaKey
from pydicom.errors import InvalidDicomError

from mmif_monai.deploy.selection import conditions_text, load_rules, one_folder, selection_matches
from mmif_monai.errors import MMIFWarning
from mmif_monai.io.outputs import staged_outputs
from mmif_monai.io.paths import NIFTI_SUFFIXES
from mmif_monai.io.preflight import VOLUME_SUFFIXES, is_volume_path
from mmif_monai.transforms import MODALITY_ALIASES, LoadModality, has_dicom_marker

__all__ = [
    "VOLUME_SUFFIXES",
    "MAX_VOLUME_VOXELS",
    "DICOM_IDENTITY_KEY",
    "PATIENT_KEYWORDS",
    "DicomSeries",
    "is_volume_path",
    "patient_key",
    "check_decodable",
    "find_dicom_series",
    "select_series",
    "check_series",
    "load_volume",
    "volume_name",
    "staged_outputs",
]


#: the most voxels a volume file may hold: above any CT, MR or PET matrix (512 x 512 by a few thousand slices), and
#: already 4 GiB per float32 copy, of which a fusion job holds several
MAX_VOLUME_VOXELS = 1024**3

#: meta key of a DICOM-loaded volume holding its source's identity (keyword -> str), kept by derived series
DICOM_IDENTITY_KEY = "dicom_identity"

#: the attributes that tell patients apart: images differing in one belong to two patients
PATIENT_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate")
#: Patient, study and frame-of-reference attributes a derived series shares with its source
IDENTITY_KEYWORDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "FrameOfReferenceUID",
)
# identity attributes recorded at load time: the shared ones and the source series' own
_RECORDED_KEYWORDS = (*IDENTITY_KEYWORDS, "SeriesInstanceUID", "SeriesDescription", "Modality")
_NIFTI2_HEADER_SIZE = 540
# slice spacings may differ by this fraction of the median before a series is called uneven
_SPACING_TOLERANCE = 0.1


def volume_name(img: torch.Tensor) -> str:
    """The file or folder a volume came from, for messages."""
    meta = img.meta if isinstance(img, MetaTensor) else {}
    return str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, "volume"))


@dataclass(frozen=True)
class DicomSeries:
    """The files of one DICOM series, the folder that holds them, and the header of each (read without pixel
    data)."""

    folder: Path
    uid: str
    modality: str
    description: str
    files: tuple[Path, ...]
    headers: tuple[pydicom.Dataset, ...]

    def label(self) -> str:
        return f"{self.modality or '?'} {self.description!r} ({len(self.files)} images, {self.uid})"


# Media Storage Directory Storage (PS3.4 Annex F): a DICOMDIR file
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


def _is_dicomdir(header: pydicom.Dataset) -> bool:
    meta = getattr(header, "file_meta", None)
    return meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_SOP_CLASS


def _files_under(folder: Path) -> list[Path]:
    """The files in ``folder`` and its subfolders, sorted, without hidden files and folders (a staging folder, a
    version-control folder); links to folders are not followed."""
    files = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        files += [Path(root) / name for name in sorted(names) if not name.startswith(".")]
    return [path for path in files if path.is_file()]


def find_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """The DICOM series among the files in ``folder`` and its subfolders (a study folder with a folder per series,
    as the Deploy app reads one), by SeriesInstanceUID.

    Raises:
        FileNotFoundError: ``folder`` does not exist. ValueError: it holds no DICOM file, or a series' files lie in
        several folders.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(folder))
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in _files_under(folder):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as error:
            if has_dicom_marker(path):  # a DICOM file that does not parse: a broken slice, not a gap to report
                raise ValueError(f"{path}: cannot read this DICOM file ({type(error).__name__}: {error})") from error
            continue  # not DICOM: a README, a thumbnail; PydicomReader is only given the series' files
        if _is_dicomdir(header):
            continue  # the media index of a DICOM CD, not an image
        if "SeriesInstanceUID" not in header:
            # pydicom reads damaged bytes leniently; an image without its series is broken, not a gap to report
            raise ValueError(f"{path}: cannot read this DICOM file (no SeriesInstanceUID: damaged, or not an image)")
        groups.setdefault(str(header.SeriesInstanceUID), []).append((path, header))
    if not groups:
        raise ValueError(f"{folder}: no DICOM files in this folder or its subfolders")
    series = []
    for uid, members in groups.items():
        first = members[0][1]
        modality, description = str(first.get("Modality", "")), str(first.get("SeriesDescription", ""))
        files = tuple(path for path, _ in members)
        series.append(
            DicomSeries(
                folder=one_folder(files, f"{modality or '?'} {description!r}", folder),
                uid=uid,
                modality=modality,
                description=description,
                files=files,
                headers=tuple(header for _, header in members),
            )
        )
    return series


def select_series(
    folder: str | Path,
    series: Sequence[DicomSeries],
    selector: str | None = None,
    role: str | None = None,
    exclude_uid: str | None = None,
) -> DicomSeries:
    """The one of ``folder``'s ``series`` matching ``selector`` (Modality, SeriesDescription or SeriesInstanceUID,
    case-insensitive).

    Without a selector: the only series; or else, for a ``role`` (``"anatomical"`` or ``"functional"``), the series
    the Deploy app's rules (:data:`~mmif_monai.deploy.selection.DEFAULT_RULES_PATH`: CT, else MR as anatomical;
    PT or NM, else MR as functional) give that role, other than the series ``exclude_uid`` (the anatomical one,
    when the functional input is the same study). Where the first rule that matches matches several series, the
    Deploy app would take the first by SeriesNumber; here the user is asked to choose.

    Raises:
        ValueError: naming the folder and listing its series, when none or several match.
    """
    listing = "; ".join(s.label() for s in series)
    choose = f"{folder}: holds {len(series)} series, choose one with --series: {listing}"
    if selector is None:
        if len(series) == 1:
            return series[0]
        if role is None:
            raise ValueError(choose)
        rules = load_rules()
        for matched in selection_matches(series, role, rules, lambda s: s.headers[0]):
            candidates = [s for s in matched if s.uid != exclude_uid]
            if len(candidates) > 1:
                raise ValueError(choose)
            if candidates:
                return candidates[0]
        other = " other than the anatomical one" if exclude_uid in {s.uid for s in series} else ""
        raise ValueError(
            f"{folder}: no {role} series{other}: none matches {conditions_text(rules, role)}; choose one with "
            f"--series: {listing}"
        )
    wanted = selector.strip().lower()
    matches = [s for s in series if wanted in (s.modality.lower(), s.description.lower(), s.uid.lower())]
    if len(matches) != 1:
        problem = "no series matches" if not matches else f"{len(matches)} series match"
        raise ValueError(f"{folder}: {problem} {selector!r} (Modality, SeriesDescription or UID): {listing}")
    return matches[0]


def _float_list(header: pydicom.Dataset, keyword: str, path: Path) -> np.ndarray:
    value = header.get(keyword)
    if value is None:
        raise ValueError(f"{path}: no {keyword}; a volume needs the slice geometry of every image")
    return np.asarray([float(v) for v in value], dtype=np.float64)


def patient_key(identity: Mapping[str, object] | pydicom.Dataset) -> tuple[str, ...]:
    """The :data:`PATIENT_KEYWORDS` of a header or identity mapping, as compared: absent ones empty, a PatientName
    without case or trailing empty components (``DOE^JOHN^^`` and ``Doe^John`` are one name)."""
    values = [str(identity.get(keyword) or "").strip() for keyword in PATIENT_KEYWORDS]
    name = PATIENT_KEYWORDS.index("PatientName")
    values[name] = "^".join(part.strip() for part in values[name].upper().split("^")).rstrip("^")
    return tuple(values)


def check_decodable(headers: Sequence[pydicom.Dataset], where: object) -> None:
    """Refuse images whose transfer syntax compresses the pixel data in a way no installed pydicom plugin decodes
    (e.g. JPEG 2000 without gdcm, pylibjpeg or Pillow's OpenJPEG), before their pixels are read.

    Raises:
        ValueError: naming ``where`` (the series or file), the compression and what would decode it.
    """
    from pydicom.pixels import get_decoder

    syntaxes = {str(getattr(h, "file_meta", {}).get("TransferSyntaxUID", "")) for h in headers} - {""}
    for syntax in sorted(syntaxes):
        uid = pydicom.uid.UID(syntax)
        if not uid.is_compressed:
            continue
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise ValueError(f"{where}: its images are compressed as {uid.name}, which pydicom cannot decode") from None
        if not decoder.is_available:
            raise ValueError(
                f"{where}: its images are compressed as {uid.name} and no decoder for it is installed (pydicom's "
                f"plugins: {'; '.join(decoder.missing_dependencies)})"
            )


def check_series(series: DicomSeries) -> float:
    """Check that ``series`` stacks into one 3D volume; returns its slice spacing in mm.

    Raises:
        ValueError: naming the folder or the file: images of several patients (PatientID, PatientName or
            PatientBirthDate) or studies, compressed pixel data no installed decoder reads, multi-frame or colour
            images, mixed orientation, size or PhotometricInterpretation, fewer than two slices, a file copied into
            the series twice, several images at one position (4D), missing slices, uneven spacing, images without
            an InstanceNumber or with InstanceNumbers out of step with the positions (MONAI's reader stacks by
            InstanceNumber).
    """
    where = series.folder
    headers, files = series.headers, series.files
    for index, keyword in enumerate(PATIENT_KEYWORDS):
        patients = {patient_key(h)[index] for h in headers}
        if len(patients) > 1:
            raise ValueError(f"{where}: one series holds images of {len(patients)} patients (different {keyword}s)")
    studies = [str(h.get("StudyInstanceUID", "")) for h in headers]
    if len(set(studies)) > 1:
        other = files[next(i for i, study in enumerate(studies) if study != studies[0])]
        raise ValueError(
            f"{where}: one series holds images of {len(set(studies))} studies (different StudyInstanceUIDs: "
            f"{files[0].name} and {other.name})"
        )
    check_decodable(headers, where)
    for path, header in zip(files, headers):
        if int(header.get("NumberOfFrames", 1) or 1) > 1:
            raise ValueError(f"{path}: multi-frame (enhanced) DICOM images are not supported; export single-frame")
        if not str(header.get("PhotometricInterpretation", "MONOCHROME2")).startswith("MONOCHROME"):
            raise ValueError(f"{path}: colour DICOM images cannot be a source volume (grey MONOCHROME expected)")
    if len(files) < 2:
        raise ValueError(f"{where}: the series has {len(files)} image; a volume needs at least two slices")
    orientation = _float_list(headers[0], "ImageOrientationPatient", files[0])
    size = (headers[0].get("Rows"), headers[0].get("Columns"))
    for path, header in zip(files, headers):
        if not np.allclose(_float_list(header, "ImageOrientationPatient", path), orientation, atol=1e-4):
            raise ValueError(f"{where}: images have different ImageOrientationPatient ({path.name})")
        if (header.get("Rows"), header.get("Columns")) != size:
            raise ValueError(f"{where}: images have different sizes ({path.name})")
        if header.get("PhotometricInterpretation") != headers[0].get("PhotometricInterpretation"):
            # MONOCHROME1 is shown inverted: the whole volume is, by its first image's header
            raise ValueError(f"{where}: images have different PhotometricInterpretations ({path.name})")
    copies: dict[str, Path] = {}
    for path, header in zip(files, headers):
        original = copies.setdefault(str(header.get("SOPInstanceUID", "")) or str(path), path)
        if original != path:
            raise ValueError(
                f"{path}: the same image as {original.name} (one SOPInstanceUID): a file copied into the series "
                "twice; remove one of them"
            )
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([_float_list(h, "ImagePositionPatient", p) @ normal for p, h in zip(files, headers)])
    distinct = len(np.unique(np.round(positions, 3)))
    if distinct < len(positions):
        raise ValueError(
            f"{where}: {len(positions)} images at {distinct} slice positions: a 4D series (time frames or repeated "
            "acquisitions); one 3D volume is expected"
        )
    order = np.argsort(positions)
    steps = np.diff(positions[order])
    spacing = float(np.median(steps))
    if steps.max() > (1 + _SPACING_TOLERANCE) * spacing:
        gap = int(np.argmax(steps))
        kind = "missing slices" if steps[gap] > 1.5 * spacing else "uneven slice spacing"
        raise ValueError(
            f"{where}: {kind}: {steps[gap]:.2f} mm between slice positions {positions[order][gap]:.2f} and "
            f"{positions[order][gap + 1]:.2f} mm, where the spacing is {spacing:.2f} mm"
        )
    unnumbered = [p.name for p, h in zip(files, headers) if h.get("InstanceNumber") in (None, "")]
    if unnumbered:
        raise ValueError(
            f"{where}: {len(unnumbered)} of {len(files)} images have no InstanceNumber (e.g. {unnumbered[0]}); the "
            "series cannot be stacked (MONAI's reader orders the slices by it)"
        )
    numbers = np.array([int(h.InstanceNumber) for h in headers])[order]
    if not (np.all(np.diff(numbers) > 0) or np.all(np.diff(numbers) < 0)):
        raise ValueError(f"{where}: InstanceNumbers do not follow the slice positions; the series cannot be stacked")
    return spacing


def _load_dicom_series(
    folder: Path, selector: str | None, modality: str | None, role: str | None, exclude_uid: str | None
) -> MetaTensor:
    series = select_series(folder, find_dicom_series(folder), selector, role, exclude_uid)
    where = series.folder
    if modality is None and series.modality and series.modality.upper() not in MODALITY_ALIASES:
        raise ValueError(
            f"{where}: series modality {series.modality!r} is not one of CT, MR, PT, NM; give --modalities to override"
        )
    spacing = check_series(series)
    # PydicomReader reads every matching file of a folder as one series: match exactly this series' files
    only_these = "|".join(re.escape(os.path.join(str(where), path.name)) + "$" for path in series.files)
    reader = PydicomReader(prune_metadata=False, fname_regex=only_these)
    img = LoadModality(reader=reader, modality=modality or series.modality or None)(where)
    stacked = float(np.linalg.norm(np.asarray(img.affine)[:3, 2]))
    if not np.isclose(stacked, spacing, rtol=_SPACING_TOLERANCE):
        raise ValueError(f"{where}: stacked slice spacing {stacked:.3f} mm differs from the headers' {spacing:.3f} mm")
    first = series.headers[0]
    img.meta[DICOM_IDENTITY_KEY] = {k: str(first.get(k)) for k in _RECORDED_KEYWORDS if first.get(k) is not None}
    return img


def _raw_nifti_header(path: Path):
    """The NIfTI-1 or NIfTI-2 header as stored, or None when it cannot be read (the reader then says why). nib.load
    would already have replaced a zero pixdim by 1."""
    import nibabel as nib

    try:
        with nib.openers.ImageOpener(str(path)) as file:
            size = file.read(4)
            file.seek(0)
            # sizeof_hdr, in either byte order, tells the two versions apart
            two = _NIFTI2_HEADER_SIZE in (int.from_bytes(size, "little"), int.from_bytes(size, "big"))
            return (nib.Nifti2Header if two else nib.Nifti1Header).from_fileobj(file, check=False)
    except Exception:
        return None


def _check_nifti_header(path: Path) -> None:
    """Check a NIfTI file's raw header before any voxel is read: refuse more voxels than :data:`MAX_VOLUME_VOXELS`
    (a damaged header would otherwise end in an allocation of hundreds of GB) and a geometry from ``pixdim`` (no
    sform) with a voxel size of 0 or less (nibabel would silently take 1 mm); warn when the sform is flagged as set
    but is all zero, since the qform (or pixdim) then gives the geometry in its place."""
    header = _raw_nifti_header(path)
    if header is None:
        return
    shape = tuple(int(n) for n in header.get_data_shape())
    if math.prod(shape) > MAX_VOLUME_VOXELS:
        raise ValueError(
            f"{path}: the header gives {' x '.join(map(str, shape))} voxels ({math.prod(shape) / 1e9:.3g} billion), "
            f"more than the {MAX_VOLUME_VOXELS / 1e9:.3g} billion accepted; the header is damaged, or the volume must "
            "be cropped or downsampled first"
        )
    sform_code = int(header["sform_code"])
    if sform_code > 0 and not np.any([header["srow_x"], header["srow_y"], header["srow_z"]]):
        source = f"qform (qform_code {int(header['qform_code'])})" if int(header["qform_code"]) > 0 else "pixdim"
        warnings.warn(
            f"{path}: the header's sform is all zero although its sform_code is {sform_code}; the voxel geometry is "
            f"taken from the {source}",
            MMIFWarning,
            stacklevel=2,
        )
        sform_code = 0
    if sform_code > 0:
        return
    sizes = [float(v) for v in header["pixdim"][1:4]]
    bad = [axis for axis, size in zip("xyz", sizes) if not size > 0]
    if bad:
        raise ValueError(
            f"{path}: the header gives a voxel size of {sizes['xyz'.index(bad[0])]:g} mm along {bad[0]} (pixdim) "
            "and no sform, so the voxel geometry is unknown; fix the header's pixdim or sform"
        )


def load_volume(
    path: str | Path,
    series: str | None = None,
    modality: str | None = None,
    role: str | None = None,
    exclude_uid: str | None = None,
) -> MetaTensor:
    """Load a 3D volume as a float32 ``MetaTensor`` (1, X, Y, Z) with its RAS affine.

    Args:
        path: a NIfTI (``.nii``, ``.nii.gz``) or ITK (``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``) file, or a folder of
            DICOM files (one series, or a study: several series, in it or in its subfolders).
        series: for a folder holding several series, the one to load: its Modality (``CT``, ``PT``...),
            SeriesDescription or SeriesInstanceUID.
        modality: the modality (``CT``, ``MR``, ``PT``, ``NM`` or an alias) written to ``meta["modality"]``;
            None keeps the DICOM Modality (NIfTI and ITK files carry none).
        role, exclude_uid: without ``series``, in a folder of several series, take the series the Deploy app's
            rules give ``role`` (``"anatomical"`` or ``"functional"``) other than ``exclude_uid``
            (:func:`select_series`).

    The meta of a DICOM volume also holds the full header of its first image (DICOM JSON model, for the SUV
    attributes) and, under :data:`DICOM_IDENTITY_KEY`, its patient, study, series and frame-of-reference identity.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming ``path``: an unsupported format, unreadable data, NaN/Inf, 4D data or several
            channels, fewer than two voxels along an axis, or a DICOM series that fails :func:`check_series`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if path.is_dir():
        img = _load_dicom_series(path, series, modality, role, exclude_uid)
    elif path.name.lower().endswith(VOLUME_SUFFIXES):
        if path.name.lower().endswith(NIFTI_SUFFIXES):
            _check_nifti_header(path)
        img = LoadModality(modality=modality)(path)
    else:
        raise ValueError(f"{path}: not a volume; expected a DICOM folder or one of {' '.join(VOLUME_SUFFIXES)}")
    if img.dim() != 4 or min(img.shape[1:]) < 2:
        raise ValueError(f"{path}: not a 3D volume (channel-first shape {tuple(img.shape)})")
    if img.shape[0] != 1:
        raise ValueError(
            f"{path}: 4D data ({img.shape[0]} volumes or channels, shape {tuple(img.shape)}); one 3D volume is expected"
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError(f"{path}: the header's voxel-to-world affine is singular or not finite")
    return img
