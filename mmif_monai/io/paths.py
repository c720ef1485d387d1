"""Where what ships with the code is (the bundles and their weights, the sample pairs), and the slice file types.

In a source checkout or an editable install they are the repository's ``bundles/`` and ``data/samples/``; a
wheel installs the same files as package data, ``mmif_monai/bundles`` and ``mmif_monai/samples``
(pyproject.toml), and they are found there.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "BUNDLES_ROOT",
    "BUNDLE_DIR",
    "SAMPLES_DIR",
    "DEFAULT_DATASET_DIR",
    "IMAGE_SUFFIXES",
    "NIFTI_SUFFIXES",
    "ITK_SUFFIXES",
    "VOLUME_SUFFIXES",
    "DICOM_SUFFIXES",
    "has_dicom_marker",
    "fused_output_name",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _shipped(checkout: Path, installed: Path) -> Path:
    """The repository's folder in a checkout, else the copy a wheel installed beside the code."""
    return checkout if checkout.is_dir() else installed


#: the MONAI bundles: ``mmif_net`` (MMIF-Net's configs and weights) and ``comparison`` (the compared networks)
BUNDLES_ROOT = _shipped(REPO_ROOT / "bundles", _PACKAGE_DIR / "bundles")
BUNDLE_DIR = BUNDLES_ROOT / "mmif_net"
SAMPLES_DIR = _shipped(REPO_ROOT / "data" / "samples", _PACKAGE_DIR / "samples")
#: the data set the studies read by default: ``$MMIF_DATASET_DIR``, else the AANLIB copy beside the checkout
#: (``../shared/data/aanlib``, as on the project's machines); an installed wheel has no checkout to be beside
DEFAULT_DATASET_DIR = Path(os.environ.get("MMIF_DATASET_DIR") or REPO_ROOT.parent / "shared" / "data" / "aanlib")

#: 2D slice formats read through PIL
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: NIfTI (MONAI's ``NibabelReader``) and ITK's MetaImage and NRRD (``ITKReader``)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
#: single-file 3D formats
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
#: single DICOM files (MONAI's ``PydicomReader``); a file without one is DICOM when :func:`has_dicom_marker`
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# DICOM PS3.10 section 7.1: a 128-byte preamble, then the four bytes "DICM"
_DICOM_MAGIC_OFFSET, _DICOM_MAGIC = 128, b"DICM"


def has_dicom_marker(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file by PS3.10: the four bytes ``DICM`` after a 128-byte preamble."""
    with open(path, "rb") as f:
        f.seek(_DICOM_MAGIC_OFFSET)
        return f.read(len(_DICOM_MAGIC)) == _DICOM_MAGIC


def fused_output_name(metadict: dict, saver: object) -> dict:
    """Output name formatter for MONAI's ``SaveImage(d)``: the fused image of ``<pair type>/<anatomical folder>/<name>``
    goes to ``<pair type>/fused/<name>``, a folder named for what it holds rather than for the anatomical source."""
    source = Path(str(metadict["filename_or_obj"]))
    return {"subject": str(source.parent.parent / "fused" / source.name), "idx": None}
