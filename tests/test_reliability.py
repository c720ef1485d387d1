"""The bad-input catalogue of `mmif fuse` (docs/reliability.md lists the same cases and their behaviour).

Every bad input must give exit status 1, exactly one stderr line ``mmif: error: ...`` that names the file and
the problem, no traceback, and leave the folder it ran in exactly as it was: nothing written (no output, no
temporary file, no new folder) and no input touched. Each case builds its own inputs in ``tmp_path``.
``test_bad_input`` runs each case in-process (an unexpected exception type would propagate, i.e. a traceback);
``test_catalogue_in_a_real_process`` runs them all once more in one fresh interpreter, so logging and warning
set-up are those users get. The inputs that are accepted, and what is done with them, are tested at the end.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from cli_runs import fuse_pair
from mmif_monai.cli.main import main
from mmif_monai.io.images import MAX_SLICE_PIXELS, read_slice
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.phantoms import write_phantom_dicom_study, write_phantom_nifti

MRI, CT = SAMPLES_DIR / "mri_ct" / "MRI" / "37010.png", SAMPLES_DIR / "mri_ct" / "CT" / "37010.png"
PET = SAMPLES_DIR / "mri_pet" / "PET" / "30061.png"
SIZE = Image.open(MRI).size[::-1]  # (rows, columns) of the sample slices


@dataclass(frozen=True)
class Case:
    """``mmif fuse`` arguments, the file the error must name, and a pattern for the problem it must state."""

    args: list[str]
    culprit: Path
    problem: str
    #: what the message must never show (patient identifiers)
    hidden: tuple[str, ...] = ()


CASES: dict[str, Callable[[Path], Case]] = {}


def case(name: str) -> Callable[[Callable[[Path], Case]], Callable[[Path], Case]]:
    def register(build: Callable[[Path], Case]) -> Callable[[Path], Case]:
        CASES[name] = build
        return build

    return register


# ----------------------------------------------------------------------------------------------- input builders


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def _good_pair(root: Path) -> tuple[Path, Path]:
    return _copy(MRI, root / "in" / "mri.png"), _copy(CT, root / "in" / "ct.png")


def _pair_args(anatomical: Path, functional: Path, output: Path, *extra: str) -> list[str]:
    return ["--anatomical", str(anatomical), "--functional", str(functional), "-o", str(output), *extra]


def _fuse_one(root: Path, anatomical: Path, functional: Path, *extra: str) -> list[str]:
    return _pair_args(anatomical, functional, root / "out" / "fused.png", *extra)


def _with_bad_functional(root: Path, bad: Path, problem: str) -> Case:
    anatomical, _ = _good_pair(root)
    return Case(_fuse_one(root, anatomical, bad), bad, problem)


def _grey(root: Path, name: str, array: np.ndarray, **save) -> Path:
    path = root / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save)
    return path


def _dicom_slice(path: Path, stored: np.ndarray, modality: str | None, **attributes) -> Path:
    """A single-frame DICOM file holding ``stored`` (uint16), with ``modality`` in (0008,0060) unless None, and
    ``attributes`` (keyword: value) set last."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    if modality is not None:
        ds.Modality = modality
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = [0, 0, 0], [1, 0, 0, 0, 1, 0], [1, 1]
    ds.PixelData = stored.astype(np.uint16).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _twelve_bit(seed: int = 0) -> np.ndarray:
    """A sample-sized slice with 12-bit values, as CT/MR scanners store them."""
    return np.asarray(Image.open(MRI), dtype=np.uint16) * 16 + np.random.default_rng(seed).integers(0, 16, SIZE).astype(
        np.uint16
    )


# ------------------------------------------------------------------------------------------------- missing / unreadable


@case("missing anatomical file")
def _(root: Path) -> Case:
    _, functional = _good_pair(root)
    missing = root / "in" / "nowhere.png"
    return Case(_fuse_one(root, missing, functional), missing, "No such file")


@case("missing functional file")
def _(root: Path) -> Case:
    return _with_bad_functional(root, root / "in" / "nowhere.png", "No such file")


@case("empty file (0 bytes)")
def _(root: Path) -> Case:
    empty = root / "in" / "empty.png"
    empty.parent.mkdir(parents=True)
    empty.touch()
    return _with_bad_functional(root, empty, "cannot read")


@case("truncated PNG")
def _(root: Path) -> Case:
    data = CT.read_bytes()
    truncated = root / "in" / "truncated.png"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(data[: len(data) // 2])
    return _with_bad_functional(root, truncated, "cannot read")


@case("not an image (garbage with a .png name)")
def _(root: Path) -> Case:
    corrupt = root / "in" / "corrupt.png"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x89PNG not really a png")
    return _with_bad_functional(root, corrupt, "cannot read")


@case("unsupported file type")
def _(root: Path) -> Case:
    notes = root / "in" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("not an image")
    return _with_bad_functional(root, notes, "unsupported image format")


# ------------------------------------------------------------------------------------------------------- DICOM


@case("corrupted DICOM (valid preamble, garbage body)")
def _(root: Path) -> Case:
    corrupt = root / "in" / "corrupt.dcm"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(512))
    return _with_bad_functional(root, corrupt, "cannot read")


@case("truncated DICOM (pixel data cut short)")
def _(root: Path) -> Case:
    path = _dicom_slice(root / "in" / "truncated.dcm", _twelve_bit(), "MR")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - SIZE[0] * SIZE[1]])
    return _with_bad_functional(root, path, "cannot read")


@case("DICOM without pixel data")
def _(root: Path) -> Case:
    path = _dicom_slice(root / "in" / "nopixels.dcm", _twelve_bit(), "MR")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return _with_bad_functional(root, path, "cannot read")


@case("wrong modality tag: a PET slice given as the anatomical image")
def _(root: Path) -> Case:
    pet = _dicom_slice(root / "in" / "pet.dcm", _twelve_bit(), "PT")
    _, functional = _good_pair(root)
    return Case(_fuse_one(root, pet, functional), pet, "PT .*expected CT or MR")


@case("unknown modality tag (US) on 16-bit data")
def _(root: Path) -> Case:
    return _with_bad_functional(
        root, _dicom_slice(root / "in" / "us.dcm", _twelve_bit(), "US"), "unknown modality 'US'"
    )


# ---------------------------------------------------------------------------------------------- size and content


@case("size mismatch")
def _(root: Path) -> Case:
    return _with_bad_functional(
        root,
        _grey(root, "small.png", np.random.default_rng(4).integers(0, 255, (128, 128), dtype=np.uint8)),
        r"size \(128, 128\) differs",
    )


@case("images smaller than 16x16")
def _(root: Path) -> Case:
    rng = np.random.default_rng(1)
    small_a = _grey(root, "a.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
    small_b = _grey(root, "b.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
    return Case(_fuse_one(root, small_a, small_b), small_a, "at least 16x16")


@case("huge image")
def _(root: Path) -> Case:
    side = int(MAX_SLICE_PIXELS**0.5) + 1
    return _with_bad_functional(root, _grey(root, "huge.png", np.zeros((side, side), np.uint8)), "larger than")


@case("colour (RGB) image where grey is expected: the anatomical image")
def _(root: Path) -> Case:
    colour = _copy(PET, root / "in" / "pet.png")
    _, functional = _good_pair(root)
    return Case(_fuse_one(root, colour, functional), colour, "must be grey")


@case("NaN values")
def _(root: Path) -> Case:
    array = np.full(SIZE, 0.5, np.float32)
    array[10, 10] = np.nan
    return _with_bad_functional(root, _grey(root, "nan.tif", array), "NaN")


@case("Inf values")
def _(root: Path) -> Case:
    array = np.random.default_rng(2).random(SIZE, dtype=np.float32)
    array[5, 7] = np.inf
    return _with_bad_functional(root, _grey(root, "inf.tif", array), "Inf")


@case("constant image")
def _(root: Path) -> Case:
    return _with_bad_functional(root, _grey(root, "flat.png", np.full(SIZE, 128, np.uint8)), "constant")


@case("empty (all-black) image")
def _(root: Path) -> Case:
    return _with_bad_functional(root, _grey(root, "black.png", np.zeros(SIZE, np.uint8)), "constant")


# ------------------------------------------------------------------------------------------------------ outputs


@case("output exists (no --overwrite)")
def _(root: Path) -> Case:
    anatomical, functional = _good_pair(root)
    existing = root / "out" / "fused.png"
    existing.parent.mkdir()
    existing.write_bytes(b"an earlier result")
    return Case(_fuse_one(root, anatomical, functional), existing, "--overwrite")


def _pair_folders(root: Path, names: list[str]) -> tuple[Path, Path]:
    for name in names:
        _copy(MRI, root / "A" / name)
        _copy(CT, root / "B" / name)
    return root / "A", root / "B"


@case("--pairs: one of several outputs exists (no --overwrite)")
def _(root: Path) -> Case:
    a, b = _pair_folders(root, ["1.png", "2.png", "3.png"])
    existing = root / "out" / "3.png"
    existing.parent.mkdir()
    existing.write_bytes(b"an earlier result")
    return Case(["--pairs", str(a), str(b), "-o", str(root / "out")], existing, "--overwrite")


@case("--pairs: output would escape the output folder through a symlink (even with --overwrite)")
def _(root: Path) -> Case:
    a, b = _pair_folders(root, ["1.png", "2.png"])
    outside = root / "elsewhere" / "precious.png"
    _copy(MRI, outside)
    (root / "out").mkdir()
    link = root / "out" / "2.png"
    link.symlink_to(outside)
    return Case(["--pairs", str(a), str(b), "-o", str(root / "out"), "--overwrite"], link, "symbolic link")


@case("output is one of the inputs (even with --overwrite)")
def _(root: Path) -> Case:
    anatomical, functional = _good_pair(root)
    return Case(
        ["--anatomical", str(anatomical), "--functional", str(functional), "-o", str(anatomical), "--overwrite"],
        anatomical,
        "input",
    )


@case("--pairs: output folder is the input folder (even with --overwrite)")
def _(root: Path) -> Case:
    a, b = _pair_folders(root, ["1.png"])
    return Case(["--pairs", str(a), str(b), "-o", str(a), "--overwrite"], a / "1.png", "input")


@case("--pairs: two inputs would be fused into one output (a.png and a.tif)")
def _(root: Path) -> Case:
    a, b = _pair_folders(root, ["scan.png"])
    for folder in (a, b):
        Image.open(folder / "scan.png").save(folder / "scan.tif")
    return Case(["--pairs", str(a), str(b), "-o", str(root / "out")], root / "out" / "scan.png", "both")


@case("output is not a .png file")
def _(root: Path) -> Case:
    anatomical, functional = _good_pair(root)
    jpeg = root / "out" / "fused.jpg"
    return Case(["--anatomical", str(anatomical), "--functional", str(functional), "-o", str(jpeg)], jpeg, r"\.png")


@case("--pairs: output folder is an existing file")
def _(root: Path) -> Case:
    a, b = _pair_folders(root, ["1.png"])
    file = _copy(MRI, root / "out.png")
    return Case(["--pairs", str(a), str(b), "-o", str(file)], file, "existing file")


@case("--pairs: a file without a partner")
def _(root: Path) -> Case:
    a, b = _pair_folders(root, ["1.png"])
    _copy(MRI, a / "orphan.png")
    return Case(["--pairs", str(a), str(b), "-o", str(root / "out")], a / "orphan.png", "without a partner")


@case("--pairs: one bad file among good ones writes nothing")
def _(root: Path) -> Case:
    a, b = _pair_folders(root, ["1.png", "2.png", "3.png"])
    (b / "3.png").write_bytes(b"\x89PNG broken")
    return Case(["--pairs", str(a), str(b), "-o", str(root / "out")], b / "3.png", "cannot read")


@case("output is an existing folder (even with --overwrite)")
def _(root: Path) -> Case:
    anatomical, functional = _good_pair(root)
    folder = root / "out" / "fused.png"
    (folder / "keep.txt").parent.mkdir(parents=True)
    (folder / "keep.txt").write_text("not the program's")
    return Case(
        _fuse_one(root, anatomical, functional, "--overwrite"),
        folder,
        "existing folder; a file never replaces a folder",
    )


# ------------------------------------------------------------------------------------------------- weights and device


def _weights(root: Path, name: str, state) -> Path:
    path = root / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _fuse_with_weights(root: Path, weights: Path) -> list[str]:
    anatomical, functional = _good_pair(root)
    return _fuse_one(root, anatomical, functional, "--method", "mmif-net", "--weights", str(weights))


class _Trap:
    """Unpickling this calls os.mkdir: a weights file that runs code when loaded (the snapshot would show it)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@case("--weights: random bytes")
def _(root: Path) -> Case:
    weights = root / "in" / "random.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    return Case(_fuse_with_weights(root, weights), weights, "not a PyTorch weights file")


@case("--weights: an empty file")
def _(root: Path) -> Case:
    weights = root / "in" / "empty.pt"
    weights.parent.mkdir(parents=True)
    weights.touch()
    return Case(_fuse_with_weights(root, weights), weights, "empty; not a PyTorch weights file")


@case("--weights: a pickle that would run code (never run)")
def _(root: Path) -> Case:
    weights = _weights(root, "trap.pt", {"model": _Trap(root / "pwned")})
    return Case(
        _fuse_with_weights(root, weights),
        weights,
        r"refused: the file holds code or objects other than tensors \(weights_only\)",
    )


@case("--weights: weights of another network")
def _(root: Path) -> Case:
    from mmif_monai.networks.baselines.densefuse import DenseFuse

    weights = _weights(root, "densefuse.pt", DenseFuse().state_dict())
    return Case(
        _fuse_with_weights(root, weights),
        weights,
        "not weights of this MMIF-Net configuration: missing .*; unexpected ",
    )


@case("--weights: NaN parameters")
def _(root: Path) -> Case:
    from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, read_weights

    state = read_weights(DEFAULT_WEIGHTS)
    first = next(key for key, value in state.items() if value.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    return Case(_fuse_with_weights(root, _weights(root, "nan.pt", state)), root / "in" / "nan.pt", "hold NaN/Inf")


@case("--weights: all parameters zero (a black fusion)")
def _(root: Path) -> Case:
    from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, read_weights

    state = {key: torch.zeros_like(value) for key, value in read_weights(DEFAULT_WEIGHTS).items()}
    return Case(
        _fuse_with_weights(root, _weights(root, "zero.pt", state)), root / "in" / "zero.pt", "into a constant image"
    )


@case("--device cuda:99 (no such CUDA device)")
def _(root: Path) -> Case:
    anatomical, functional = _good_pair(root)
    return Case(
        _fuse_one(root, anatomical, functional, "--device", "cuda:99"),
        Path("cuda:99"),
        "no CUDA device.*available: cpu",
    )


# ------------------------------------------------------------------------------------------------- 3D volumes


def _study(root: Path) -> tuple[Path, Path]:
    """A small PET/CT phantom study: the CT and the PET series folders (distinctive names for the messages)."""
    study = write_phantom_dicom_study(root / "study", shape=(24, 24, 16))
    return study.ct_dir.rename(root / "study" / "ct-series"), study.pt_dir.rename(root / "study" / "pet-series")


def _nifti(root: Path) -> tuple[Path, Path]:
    files = write_phantom_nifti(root / "nii", shape=(24, 24, 16))
    return files.anatomical, files.functional


def _fuse_volumes(root: Path, anatomical: Path, functional: Path, *extra: str) -> list[str]:
    return _pair_args(anatomical, functional, root / "out" / "fused.nii.gz", *extra)


def _edit_series(folder: Path, edit: Callable[[int, pydicom.Dataset], None]) -> None:
    """Apply ``edit(index, dataset)`` to every file of a series folder, in slice order, and save it back."""
    datasets = sorted(
        ((path, pydicom.dcmread(path)) for path in folder.iterdir()), key=lambda p: int(p[1].InstanceNumber)
    )
    for index, (path, ds) in enumerate(datasets):
        edit(index, ds)
        ds.save_as(path)


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


@case("3D: missing slice in a DICOM series")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    sorted(ct.iterdir())[8].unlink()
    return Case(_fuse_volumes(root, ct, pet), ct, "missing slices")


@case("3D: corrupted file in a DICOM series (garbage after the DICM marker)")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    broken = sorted(ct.iterdir())[5]
    broken.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(300))
    return Case(_fuse_volumes(root, ct, pet), broken, "cannot read this DICOM file")


@case("3D: truncated pixel data in a DICOM series")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    path = sorted(ct.iterdir())[5]
    path.write_bytes(path.read_bytes()[:-200])
    return Case(_fuse_volumes(root, ct, pet), ct, "cannot read")


@case("3D: two PatientIDs in one series")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    _edit_series(ct, lambda i, ds: setattr(ds, "PatientID", "OTHER-002") if i == 3 else None)
    return Case(_fuse_volumes(root, ct, pet), ct, "2 patients", hidden=("OTHER-002", "PHANTOM-001"))


@case("3D: anatomical and functional series of two patients")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    _edit_series(pet, lambda i, ds: setattr(ds, "PatientID", "OTHER-002"))
    return Case(_fuse_volumes(root, ct, pet), pet, "two patients", hidden=("OTHER-002", "PHANTOM-001"))


@case("3D: CT and PET of one PatientID but another PatientName and birth date")
def _(root: Path) -> Case:
    ct, pet = _study(root)

    def other_patient(index: int, ds: pydicom.Dataset) -> None:
        ds.PatientName, ds.PatientBirthDate = "Quorvath^Elsbet", "19520817"

    _edit_series(pet, other_patient)
    hidden = ("Quorvath", "Elsbet", "19520817", "1952-08-17", "Phantom", "PHANTOM-001")
    return Case(_fuse_volumes(root, ct, pet), pet, "its PatientName differs .* two patients", hidden=hidden)


@case("3D: CT and PET of one PatientID and name but another birth date")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    _edit_series(pet, lambda i, ds: setattr(ds, "PatientBirthDate", "19520817"))
    hidden = ("19520817", "1952-08-17", "PHANTOM-001")
    return Case(_fuse_volumes(root, ct, pet), pet, "its PatientBirthDate differs .* two patients", hidden=hidden)


@case("3D: one file of another study in a series")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    study = generate_uid()
    _edit_series(ct, lambda i, ds: setattr(ds, "StudyInstanceUID", study) if i == 3 else None)
    return Case(_fuse_volumes(root, ct, pet), ct, "2 studies")


@case("3D: a file copied into its series twice (byte-identical duplicate)")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    copy = _copy(sorted(ct.iterdir())[4], ct / "IM000005_copy.dcm")
    # which of two identical files is the copy cannot be told: the message names both
    return Case(_fuse_volumes(root, ct, pet), copy, r"the same image as IM000005\.dcm .*copied into the series twice")


@case("3D: a series without InstanceNumbers")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    _edit_series(ct, lambda i, ds: delattr(ds, "InstanceNumber"))
    return Case(_fuse_volumes(root, ct, pet), ct, "16 of 16 images have no InstanceNumber")


@case("3D: a series mixing MONOCHROME1 and MONOCHROME2 images")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    _edit_series(ct, lambda i, ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1") if i == 2 else None)
    return Case(_fuse_volumes(root, ct, pet), ct, r"different PhotometricInterpretations \(IM000003\.dcm\)")


@case("3D: uneven slice spacing in a series")
def _(root: Path) -> Case:
    ct, pet = _study(root)

    def shift(index: int, ds: pydicom.Dataset) -> None:
        if index > 8:  # every later slice 1.5 mm further: one step of 15 mm among steps of 13.5 mm
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) - 1.5]

    _edit_series(ct, shift)
    return Case(_fuse_volumes(root, ct, pet), ct, "uneven slice spacing")


@case("3D: 4D DICOM series (two images at every position)")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    for path in sorted(pet.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), int(ds.InstanceNumber) + 100
        ds.save_as(pet / f"frame2-{path.name}")
    return Case(_fuse_volumes(root, ct, pet), pet, "4D series")


@case("3D: 4D NIfTI")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    image = nib.load(functional)
    frames = _save_nifti(root / "nii" / "frames.nii.gz", np.stack([image.get_fdata()] * 3, axis=-1), image.affine)
    return Case(_fuse_volumes(root, anatomical, frames), frames, "4D data")


@case("3D: single-slice NIfTI")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    flat = _save_nifti(root / "nii" / "flat.nii.gz", np.random.default_rng(5).random((24, 24, 1)), np.eye(4))
    return Case(_fuse_volumes(root, anatomical, flat), flat, "not a 3D volume")


@case("3D: truncated NIfTI")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    truncated = root / "nii" / "truncated.nii.gz"
    data = functional.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return Case(_fuse_volumes(root, anatomical, truncated), truncated, "damaged file: its gzip data .*EOFError")


def _flip_middle(path: Path, count: int = 64) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))
    return path


@case("3D: corrupted .nii.gz (64 bytes flipped in the middle of the gzip stream)")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    corrupt = _flip_middle(anatomical.rename(anatomical.with_name("ct_corrupt.nii.gz")))
    return Case(_fuse_volumes(root, corrupt, functional), corrupt, "damaged file: its gzip data does not decompress")


@case("3D: corrupted compressed MetaImage (64 bytes flipped in its zlib data)")
def _(root: Path) -> Case:
    import itk

    anatomical, functional = _nifti(root)
    mha = root / "nii" / "ct.mha"
    image = itk.imread(str(anatomical))
    geometry_only = itk.image_from_array(itk.array_from_image(image))  # no NIfTI fields for ITK to warn about
    geometry_only.CopyInformation(image)
    itk.imwrite(geometry_only, str(mha), compression=True)
    return Case(_fuse_volumes(root, _flip_middle(mha), functional), mha, "damaged file: its zlib data")


@case("3D: NIfTI header claiming 4000 x 4000 x 4000 voxels (a damaged header)")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    header = nib.Nifti1Header()
    header.set_data_shape((4000, 4000, 4000))
    header.set_data_dtype(np.float32)
    header.set_sform(nib.load(anatomical).affine, code=1)
    huge = root / "nii" / "huge.nii.gz"
    with gzip.open(huge, "wb") as file:  # the header and a few kB of voxels: all a damaged file may hold
        header.write_to(file)
        file.write(bytes(4 + 4096))
    return Case(_fuse_volumes(root, huge, functional), huge, r"4000 x 4000 x 4000 voxels \(64 billion\), more than")


@case("3D: complex-valued NIfTI")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    image = nib.load(anatomical)
    real = np.asanyarray(image.dataobj).astype(np.float32)
    complex_path = root / "nii" / "complex.nii.gz"
    nib.save(nib.Nifti1Image((real + 1j * real[::-1]).astype(np.complex64), image.affine), complex_path)
    return Case(_fuse_volumes(root, complex_path, functional), complex_path, r"complex-valued data \(complex64\)")


@case("3D: fields of view that do not overlap")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    image = nib.load(functional)
    moved = image.affine.copy()
    moved[:3, 3] += 1000.0  # a metre away
    far = _save_nifti(root / "nii" / "far.nii.gz", image.get_fdata(), moved)
    return Case(_fuse_volumes(root, anatomical, far), far, "does not overlap")


@case("3D: NaN in a NIfTI volume")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    image = nib.load(functional)
    data = image.get_fdata()
    data[3, 3, 3] = np.nan
    return Case(
        _fuse_volumes(root, anatomical, _save_nifti(root / "nii" / "nan.nii.gz", data, image.affine)),
        root / "nii" / "nan.nii.gz",
        "NaN",
    )


@case("3D: constant volume")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    image = nib.load(functional)
    blank = _save_nifti(root / "nii" / "blank.nii.gz", np.zeros(image.shape), image.affine)
    return Case(_fuse_volumes(root, anatomical, blank), blank, "constant")


@case("3D: wrong modality tag: the PET series given as the anatomical volume")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    return Case(_fuse_volumes(root, pet, ct), pet, "functional imaging, not anatomical")


@case("3D: unknown modality tag (US) on a series")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    _edit_series(pet, lambda i, ds: setattr(ds, "Modality", "US"))
    return Case(_fuse_volumes(root, ct, pet), pet, "'US' is not one of")


@case("3D: a folder without DICOM files")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    empty = root / "empty-folder"
    empty.mkdir()
    return Case(_fuse_volumes(root, empty, functional), empty, "no DICOM files")


@case("3D: a folder with two series of one modality and no --series")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    uid = generate_uid()
    for path in sorted(ct.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesDescription = uid, generate_uid(), "CT second"
        ds.save_as(ct / f"second-{path.name}")
    return Case(_fuse_volumes(root, ct, pet), ct, "choose one with --series")


@case("3D: a 2D image as the functional input of a volume")
def _(root: Path) -> Case:
    anatomical, _ = _nifti(root)
    slice_png = _copy(PET, root / "in" / "slice.png")
    return Case(_fuse_volumes(root, anatomical, slice_png), slice_png, "not a volume")


@case("3D: NIfTI output not ending in .nii/.nii.gz")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    png = root / "out" / "fused.png"
    return Case(["--anatomical", str(anatomical), "--functional", str(functional), "-o", str(png)], png, r"\.nii")


@case("3D: one of the outputs (a preview) exists (no --overwrite)")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    preview = root / "out" / "fused_axial.png"
    preview.parent.mkdir()
    preview.write_bytes(b"an earlier preview")
    return Case(_fuse_volumes(root, anatomical, functional), preview, "--overwrite")


@case("3D: output is the anatomical input file (even with --overwrite)")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    return Case(
        ["--anatomical", str(anatomical), "--functional", str(functional), "-o", str(anatomical), "--overwrite"],
        anatomical,
        "modify the input",
    )


@case("3D: DICOM output folder is the input series folder (even with --overwrite)")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    args = ["--anatomical", str(ct), "--functional", str(pet), "--format", "dicom", "-o", str(ct), "--overwrite"]
    return Case(args, ct, "modify the input")


@case("3D: DICOM output folder holds the inputs (even with --overwrite)")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    args = ["--anatomical", str(ct), "--functional", str(pet), "--format", "dicom", "-o", str(ct.parent), "--overwrite"]
    return Case(args, ct.parent, "modify the input")


def _fuse_to_dicom(root: Path, output: Path, *extra: str) -> list[str]:
    ct, pet = _study(root)
    return ["--anatomical", str(ct), "--functional", str(pet), "--format", "dicom", "-o", str(output), *extra]


@case("3D: --overwrite into a DICOM output folder that holds other files")
def _(root: Path) -> Case:
    from monai.data.meta_tensor import MetaTensor

    from mmif_monai.io.dicom_series import write_fused_series

    output = root / "out" / "DCM"
    # an earlier fused series of ours, and next to it another patient's series and notes: none may be deleted
    write_fused_series(MetaTensor(torch.rand(1, 8, 8, 3), affine=torch.eye(4)), None, output)
    other = write_phantom_dicom_study(root / "other", shape=(16, 16, 4), patient_id="OTHER-002")
    other.ct_dir.rename(output / "other-patient")
    (output / "notes.txt").write_text("reading notes")
    return Case(_fuse_to_dicom(root, output, "--overwrite"), output, "replaces only a fused series written by mmif")


@case("3D: NIfTI output is an existing folder (even with --overwrite)")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    folder = root / "out" / "fused.nii.gz"
    folder.mkdir(parents=True)
    (folder / "keep.nii.gz").write_bytes(b"someone else's")
    return Case(_fuse_volumes(root, anatomical, functional, "--overwrite"), folder, "a file never replaces a folder")


@case("3D: DICOM output is an existing file (even with --overwrite)")
def _(root: Path) -> Case:
    output = root / "out" / "DCM"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"a file, not a series folder")
    return Case(_fuse_to_dicom(root, output, "--overwrite"), output, "a DICOM series folder never replaces a file")


@case("3D: functional series in another frame of reference (no --register)")
def _(root: Path) -> Case:
    ct, pet = _study(root)
    frame = generate_uid()
    _edit_series(pet, lambda i, ds: setattr(ds, "FrameOfReferenceUID", frame))
    return Case(_fuse_volumes(root, ct, pet), pet, "FrameOfReferenceUID differs .* pass --register")


@case("3D: a CT volume given as the functional input (NIfTI, inputs swapped)")
def _(root: Path) -> Case:
    ct, pet = _nifti(root)
    return Case(
        _fuse_volumes(root, pet, ct), ct, "looks like CT in Hounsfield units; are --anatomical and --functional swapped"
    )


@case("3D: NIfTI voxel size 0 in pixdim, no sform")
def _(root: Path) -> Case:
    anatomical, functional = _nifti(root)
    image = nib.load(anatomical)
    flat = nib.Nifti1Image(np.asanyarray(image.dataobj), None)
    flat.header["pixdim"][1:4] = [10.0, 10.0, 0.0]
    nib.save(flat, anatomical)
    return Case(_fuse_volumes(root, anatomical, functional), anatomical, "voxel size of 0 mm along z")


# -------------------------------------------------------------------------------------------------------- checks


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a folder, a symlink's target, or a file's content hash and modification time."""
    state = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[key] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            state[key] = "folder"
        else:
            state[key] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mtime_ns}"
    return state


def _check_error(case_: Case, code: int, stderr: str) -> None:
    assert code == 1, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmif: error: "), stderr
    assert case_.culprit.name in lines[0], lines[0]
    assert re.search(case_.problem, lines[0]), lines[0]
    assert not [text for text in case_.hidden if text in stderr], lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capfd):
    bad = CASES[name](tmp_path)
    before = _snapshot(tmp_path)
    code = main(["fuse", "--method", "average", *bad.args])
    _check_error(bad, code, capfd.readouterr().err)
    assert _snapshot(tmp_path) == before  # nothing written, nothing touched


_DRIVER = """
import json, sys
from mmif_monai.cli.main import main
for args in json.load(open(sys.argv[1])):
    print("@@case", file=sys.stderr, flush=True)
    print("@@exit", main(args), flush=True)
"""


@pytest.mark.slow
def test_catalogue_in_a_real_process(tmp_path):
    """All cases in one fresh interpreter (one start-up, not one per case): the stderr users see, per case."""
    cases = {name: CASES[name](tmp_path / f"case{i}") for i, name in enumerate(CASES)}
    before = _snapshot(tmp_path)
    argv_file = tmp_path.parent / f"{tmp_path.name}-argv.json"
    argv_file.write_text(json.dumps([["fuse", "--method", "average", *c.args] for c in cases.values()]))
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(argv_file)], capture_output=True, text=True, timeout=300
    )
    codes = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("@@exit")]
    stderrs = result.stderr.split("@@case\n")[1:]
    assert len(codes) == len(stderrs) == len(cases), result.stderr[-3000:]
    for (name, bad), code, stderr in zip(cases.items(), codes, stderrs):
        try:
            _check_error(bad, code, stderr)
        except AssertionError as error:
            raise AssertionError(f"case {name!r}: {error}") from error
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------- accepted inputs, defined scaling


def test_sixteen_bit_images_use_their_range_not_the_type_maximum(tmp_path):
    twelve = _twelve_bit()
    a = read_slice(_grey(tmp_path, "twelve.png", twelve))
    # /65535 would leave 12-bit data below 1/16; the percentile rule spans [0, 1]
    assert a.max() == 1.0 and float(torch.quantile(a.flatten(), 0.99)) > 0.5
    # the scaling does not depend on how many of the 16 bits the data uses
    b = read_slice(_grey(tmp_path, "sixteen.png", twelve * 16))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_float_images_in_unit_range_are_kept_others_use_percentiles(tmp_path):
    unit = np.random.default_rng(3).random(SIZE, dtype=np.float32)
    np.testing.assert_array_equal(read_slice(_grey(tmp_path, "unit.tif", unit))[0].numpy(), unit)
    hounsfield = unit * 3000 - 1000  # a float slice in CT units, without a header to say so
    scaled = read_slice(_grey(tmp_path, "hu.tif", hounsfield))
    assert scaled.min() == 0 and scaled.max() == 1
    low, high = np.percentile(hounsfield, [0.5, 99.5])
    np.testing.assert_allclose(scaled[0].numpy(), np.clip((hounsfield - low) / (high - low), 0, 1), atol=1e-5)


def test_dicom_slices_scale_by_their_modality_and_without_one_by_percentiles(tmp_path):
    stored = _twelve_bit()
    ct = read_slice(_dicom_slice(tmp_path / "ct.dcm", stored, "CT"))  # stored values are HU here: window [-100, 1500]
    # row-major like every slice: pixel [r, c] is the stored row r, column c
    np.testing.assert_allclose(ct[0].numpy(), np.clip((stored + 100.0) / 1600.0, 0, 1), atol=1e-6)
    wide = read_slice(_dicom_slice(tmp_path / "wide.dcm", stored[:100], "CT"))
    assert wide.shape == (1, 100, stored.shape[1])
    untagged = read_slice(_dicom_slice(tmp_path / "untagged.dcm", stored, None))
    assert untagged.min() == 0 and untagged.max() == 1
    out = tmp_path / "fused.png"
    untagged_file = tmp_path / "untagged.dcm"
    assert fuse_pair(str(untagged_file), str(tmp_path / "ct.dcm"), str(out), "--method", "average") == 0
    assert Image.open(out).size == SIZE[::-1]


def test_a_monochrome1_slice_is_fused_as_a_viewer_shows_it(tmp_path):
    """MONOCHROME1 stores the anatomy inverted (lowest value white); read as stored, an MR slice was fused with its
    anatomy inverted. Shown inverted, it reads as the same slice stored MONOCHROME2: the percentile rule maps the
    reflected values to 1 minus the original's (the 0.5 and 99.5 percentiles swap), exact but for float32
    rounding (1e-5 of the [0, 1] range). The fused files then differ by at most the one grey level such a rounding
    can move a value across."""
    stored = _twelve_bit()
    normal = _dicom_slice(tmp_path / "m2.dcm", stored, "MR")
    inverted = _dicom_slice(tmp_path / "m1.dcm", 4095 - stored, "MR", PhotometricInterpretation="MONOCHROME1")
    torch.testing.assert_close(read_slice(inverted), read_slice(normal), rtol=0, atol=1e-5)
    fused = []
    for source in (normal, inverted):
        out = tmp_path / f"fused-{source.stem}.png"
        assert fuse_pair(source, _copy(CT, tmp_path / "ct.png"), out, "--method", "average", "--overwrite") == 0
        fused.append(np.asarray(Image.open(out), dtype=int))
    assert np.abs(fused[0] - fused[1]).max() <= 1


def test_a_dicom_slice_with_a_voi_lut_is_read_through_it_as_a_viewer_shows_it(tmp_path):
    """The header's window (PS3.3 C.11.2.1.2.1, LINEAR: centre c - 0.5, width w - 1) on the rescaled values, or
    its VOI LUT Sequence, mapped onto [0, 1], and MONOCHROME1 inverted after it; the oracles are the standard's
    formulas, to float32 rounding."""
    stored = _twelve_bit()
    rescaled = stored * 2.0 - 1024.0  # RescaleSlope 2, RescaleIntercept -1024: Hounsfield units
    window = {"WindowCenter": 40, "WindowWidth": 400, "RescaleSlope": 2, "RescaleIntercept": -1024}
    expected = np.clip((rescaled - 39.5) / 399.0 + 0.5, 0.0, 1.0)
    shown = read_slice(_dicom_slice(tmp_path / "ct.dcm", stored, "CT", **window))
    np.testing.assert_allclose(shown[0].numpy(), expected, rtol=0, atol=1e-6)
    inverted = read_slice(
        _dicom_slice(tmp_path / "m1.dcm", stored, "CT", PhotometricInterpretation="MONOCHROME1", **window)
    )
    np.testing.assert_allclose(inverted[0].numpy(), 1.0 - expected, rtol=0, atol=1e-6)

    lut = Dataset()  # a square-root curve over the 12 bits the slice uses, 16-bit entries
    table = np.round(np.sqrt(np.arange(4096) / 4095.0) * 65535).astype(np.uint16)
    lut.LUTDescriptor = [4096, 0, 16]
    lut.add_new("LUTData", "OW", table.tobytes())
    through_lut = read_slice(_dicom_slice(tmp_path / "lut.dcm", stored, "MR", VOILUTSequence=[lut]))
    np.testing.assert_allclose(through_lut[0].numpy(), table[stored] / 65535.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dimensions", ["2D", "3D"])
def test_a_nearly_empty_image_is_fused_with_a_warning(tmp_path, capfd, dimensions):
    """All zero but one pixel (voxel) of 1: not constant, so not refused, but most likely an empty export; the
    run goes on and says so in one line naming the file."""
    if dimensions == "2D":
        anatomical, _ = _good_pair(tmp_path)
        sparse = np.zeros(SIZE, np.uint8)
        sparse[100, 120] = 1
        functional = _grey(tmp_path, "sparse.png", sparse)
        args = _fuse_one(tmp_path, anatomical, functional)
        what, total = ("image", "pixels"), SIZE[0] * SIZE[1]
    else:
        anatomical, pet = _nifti(tmp_path)
        image = nib.load(pet)
        sparse = np.zeros(image.shape, np.float32)
        sparse[6, 6, 4] = 1
        functional = _save_nifti(tmp_path / "nii" / "sparse.nii.gz", sparse, image.affine)
        args = _fuse_volumes(tmp_path, anatomical, functional)
        what, total = ("volume", "voxels"), sparse.size
    assert main(["fuse", "--method", "average", *args]) == 0
    assert capfd.readouterr().err.strip().splitlines() == [
        f"mmif: warning: {functional}: nearly empty {what[0]}: only 1 of {total} {what[1]} differ from its "
        f"background; check that it is the {what[0]} meant"
    ]


def test_pairs_folders_of_dicom_slices_are_fused_matched_by_name(tmp_path):
    """--pairs took image suffixes alone and refused folders of 2D DICOM slices ("no images"), though a single
    DICOM slice fuses. Their files now pair by name as PNGs do: a .dcm file, one without a suffix and one named by
    a UID (its last dots are no suffix: it keeps them, and ".png" is added), known by their DICM marker; other
    files are passed over. Each pair fuses as it does alone."""
    mr, ct = tmp_path / "MR", tmp_path / "CT"
    names = ["IM0001.dcm", "IM0002", "1.2.826.0.1.3680043.9.1"]
    for seed, name in enumerate(names):
        _dicom_slice(mr / name, _twelve_bit(seed), "MR")
        _dicom_slice(ct / name, np.asarray(Image.open(CT), dtype=np.uint16) * 16 + seed, "CT")
    (mr / "README.txt").write_text("not a slice")
    out = tmp_path / "out"
    assert main(["fuse", "--method", "average", "--pairs", str(mr), str(ct), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1.2.826.0.1.3680043.9.1.png", "IM0001.png", "IM0002.png"]
    alone = tmp_path / "alone.png"
    assert fuse_pair(mr / "IM0002", ct / "IM0002", alone, "--method", "average") == 0
    assert np.array_equal(np.asarray(Image.open(alone)), np.asarray(Image.open(out / "IM0002.png")))


def test_rgba_and_grey_as_rgb_inputs_are_accepted(tmp_path):
    rgba = Image.open(PET).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(tmp_path / "pet_rgba.png")
    grey_as_rgb = Image.open(MRI).convert("RGB")
    grey_as_rgb.save(tmp_path / "mri_rgb.png")
    assert read_slice(tmp_path / "mri_rgb.png").shape[0] == 1  # three equal channels: grey
    torch.testing.assert_close(read_slice(tmp_path / "pet_rgba.png"), read_slice(PET))  # alpha dropped
    out = tmp_path / "fused.png"
    assert (
        fuse_pair(str(tmp_path / "mri_rgb.png"), str(tmp_path / "pet_rgba.png"), str(out), "--method", "average") == 0
    )
    assert Image.open(out).mode == "RGB"


def test_a_failed_write_leaves_the_earlier_output_and_no_temporary_file(tmp_path, monkeypatch, capfd):
    anatomical, functional = _good_pair(tmp_path)
    out = tmp_path / "out" / "fused.png"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    assert main(["fuse", "--method", "average", *_fuse_one(tmp_path, anatomical, functional, "--overwrite")]) == 1
    err = capfd.readouterr().err
    assert f"cannot write {out}: No space left on device" in err and ".fused-" not in err  # no temporary name
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fused.png"]


def test_outputs_get_the_usual_file_permissions_not_the_temporary_files(tmp_path):
    # the atomic write goes through a private temporary file; the result must be as readable as any new file
    anatomical, functional = _good_pair(tmp_path)
    previous = os.umask(0o022)
    try:
        assert main(["fuse", "--method", "average", *_fuse_one(tmp_path, anatomical, functional)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out" / "fused.png").stat().st_mode) == 0o644


# ------------------------------------------------------------------------------------------------ loading safety

ROOT = Path(__file__).resolve().parents[1]


def _torch_load_calls(source: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
    ]


def _config_expressions(value) -> list[str]:
    """The Python expressions (``"$..."`` strings) anywhere in a parsed bundle config."""
    if isinstance(value, str):  # "@id#key" references become a plain name so that the expression parses
        return [re.sub(r"@[\w#]+", "reference", value[1:])] if value.startswith("$") else []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [expression for child in children for expression in _config_expressions(child)]


def test_every_torch_load_in_the_repository_passes_weights_only_true():
    """A pickle can run code when loaded; weights_only=True restricts torch.load to tensors and plain data."""
    sources = {path: path.read_text() for path in ROOT.rglob("*.py") if ".git" not in path.parts}
    for config in ROOT.glob("bundles/*/configs/*.json"):
        for i, expression in enumerate(_config_expressions(json.loads(config.read_text()))):
            sources[Path(f"{config}#{i}")] = expression
    calls = {path: _torch_load_calls(source) for path, source in sources.items()}
    assert sum(map(len, calls.values())) >= 3  # the audit sees the loads it is meant to see
    unsafe = [
        f"{path}:{call.lineno}"
        for path, found in calls.items()
        for call in found
        if not any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in call.keywords
        )
    ]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def test_volumes_on_other_grids_and_without_a_modality_tag_are_accepted(tmp_path, capfd):
    """Different grids and spacings are resampled (world coordinates); a series without its Modality tag is
    taken for CT when it reaches into air's Hounsfield units. Inputs stay untouched."""
    ct, pet = _study(tmp_path)
    _edit_series(ct, lambda i, ds: delattr(ds, "Modality"))
    before = _snapshot(tmp_path / "study")
    out = tmp_path / "out" / "fused.nii.gz"
    assert main(["fuse", "--method", "average", "--anatomical", str(ct), "--functional", str(pet), "-o", str(out)]) == 0
    assert "anatomical CT (ct_window), functional PT (suv)" in capfd.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "fused.nii.gz",
        "fused_axial.png",
        "fused_coronal.png",
        "fused_sagittal.png",
    ]
    assert nib.load(out).shape[:3] == (24, 24, 16)  # the CT grid; the PET (12 x 12 x 8, other origin) resampled onto it
    assert _snapshot(tmp_path / "study") == before


def test_an_all_zero_sform_flagged_as_set_gives_way_to_the_qform_with_a_warning(tmp_path, capfd):
    """sform_code 1 over an all-zero sform: the qform gives the geometry (as MONAI's reader takes it), the run
    succeeds, and stderr says so in one line."""
    anatomical, functional = _nifti(tmp_path)
    image = nib.load(anatomical)
    header = image.header.copy()
    header.set_qform(image.affine, code=1)
    header.set_sform(np.zeros((4, 4)), code=1)
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), None, header), anatomical)
    out = tmp_path / "out" / "fused.nii.gz"
    assert _average_3d(anatomical, functional, out) == 0
    assert capfd.readouterr().err.strip().splitlines() == [
        f"mmif: warning: {anatomical}: the header's sform is all zero although its sform_code is 1; the voxel "
        "geometry is taken from the qform (qform_code 1)"
    ]
    np.testing.assert_allclose(nib.load(out).affine, image.affine, atol=1e-4)


def _jpeg2000_series(folder: Path) -> None:
    """Re-encode every image of a series folder as lossless JPEG 2000 (Pillow's OpenJPEG), as PACS exports do."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        codestream = io.BytesIO()
        Image.fromarray(ds.pixel_array.astype(np.uint16)).save(
            codestream, format="JPEG2000", irreversible=False, no_jp2=True
        )
        ds.PixelData = encapsulate([codestream.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.save_as(path)


def test_a_jpeg2000_series_without_a_decoder_is_one_line_naming_the_series_and_the_decoder(
    tmp_path, monkeypatch, capfd
):
    """With a decoder (Pillow's OpenJPEG) the series fuses; with none installed (every pydicom plugin made
    unavailable), one line names the series, the compression and the plugins that would decode it, where pydicom's
    own message was cut off after "missing dependencies:" and nothing was named."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    ct, pet = _study(tmp_path)
    assert pydicom.dcmread(next(ct.iterdir())).pixel_array.dtype == np.uint16  # the phantom stores unsigned CT
    _jpeg2000_series(ct)
    assert _average_3d(ct, pet, tmp_path / "out" / "fused.nii.gz") == 0, capfd.readouterr().err
    capfd.readouterr()
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})
    before = _snapshot(tmp_path)
    assert _average_3d(ct, pet, tmp_path / "out2" / "fused.nii.gz") == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(
        f"mmif: error: {ct}: its images are compressed as JPEG 2000 Image Compression (Lossless Only) and no "
        "decoder for it is installed (pydicom's plugins: "
    ), err
    assert "pylibjpeg-openjpeg" in err, err
    assert _snapshot(tmp_path) == before
    # a single slice of the series, fused as a 2D image, is refused the same way
    with pytest.raises(ValueError, match=r"IM000001\.dcm: its images are compressed as JPEG 2000 .* no decoder"):
        read_slice(ct / "IM000001.dcm")


def test_a_monochrome1_series_is_normalised_as_a_viewer_shows_it(tmp_path):
    """The phantom's CT stored as an MR series twice, MONOCHROME2 and MONOCHROME1 (values reflected): the job's
    normalised anatomical volumes agree, the MONOCHROME1 one shown inverted (the percentile rule takes a reflection
    to 1 - x, to float32 rounding)."""
    from mmif_monai.jobs.volumes import load_volume_pair, normalise_pair

    ct, pet = _study(tmp_path)
    normal = tmp_path / "study" / "mr-m2"
    inverted = tmp_path / "study" / "mr-m1"
    for folder, photometric in ((normal, "MONOCHROME2"), (inverted, "MONOCHROME1")):
        folder.mkdir()
        series = generate_uid()
        for path in ct.iterdir():
            ds = pydicom.dcmread(path)
            ds.Modality, ds.SeriesInstanceUID, ds.SOPInstanceUID = "MR", series, generate_uid()
            if photometric == "MONOCHROME1":
                ds.PixelData = (65535 - ds.pixel_array.astype(np.uint16)).tobytes()
            ds.PhotometricInterpretation = photometric
            ds.save_as(folder / path.name)
    volumes = [normalise_pair(load_volume_pair(folder, pet))[0].anatomical for folder in (normal, inverted)]
    assert volumes[0].meta["modality"] == "MR"
    torch.testing.assert_close(volumes[1].as_tensor(), volumes[0].as_tensor(), rtol=0, atol=1e-5)


def test_every_catalogue_case_is_documented():
    """docs/reliability.md's catalogue tables list exactly the cases above."""
    doc = (ROOT / "docs" / "reliability.md").read_text()
    catalogue = doc[doc.index("## The error contract") : doc.index("## Accepted inputs")]
    rows = [line.split(" | ")[0].removeprefix("| ").strip() for line in catalogue.splitlines() if line.startswith("| ")]
    documented = set(rows) - {"case", "---"}
    assert documented == set(CASES), {
        "undocumented": sorted(set(CASES) - documented),
        "not in the catalogue": sorted(documented - set(CASES)),
    }


# ------------------------------------------------------------------------------------------------------ outputs


def _average_3d(ct: Path, pet: Path, output: Path, *extra: str) -> int:
    return main(
        ["fuse", "--method", "average", "--anatomical", str(ct), "--functional", str(pet), "-o", str(output), *extra]
    )


def test_overwrite_replaces_an_earlier_fused_series_and_spares_its_neighbours(tmp_path, capfd):
    ct, pet = _study(tmp_path)
    output = tmp_path / "out" / "DCM"
    neighbour = tmp_path / "out" / "notes.txt"
    neighbour.parent.mkdir()
    neighbour.write_text("next to the series, not in it")
    assert _average_3d(ct, pet, output, "--format", "dicom") == 0
    first = {path.name: pydicom.dcmread(path).SeriesInstanceUID for path in output.iterdir()}
    assert _average_3d(ct, pet, output, "--format", "dicom", "--overwrite") == 0, capfd.readouterr().err
    second = {path.name: pydicom.dcmread(path).SeriesInstanceUID for path in output.iterdir()}
    assert second.keys() == first.keys() and set(second.values()).isdisjoint(first.values())  # a new series
    assert neighbour.read_text() == "next to the series, not in it"
    assert not list(output.parent.glob(".mmif-staging-*"))


# runs `mmif fuse` with one hook: after writing its first DICOM file it says so and waits, to be killed there
_PAUSED_DICOM_WRITE = """
import sys, pydicom
from mmif_monai.cli.main import main
save_as = pydicom.Dataset.save_as
def save_then_wait(self, *args, **kwargs):
    save_as(self, *args, **kwargs)
    print("@@written", flush=True)
    sys.stdin.read()
pydicom.Dataset.save_as = save_then_wait
main(sys.argv[1:])
"""
# holds a staging folder open in `folder` (sys.argv[1]) until killed: a run still writing
_STAGING_HELD = """
import sys
from mmif_monai.io.outputs import staged_outputs
with staged_outputs([sys.argv[1] + "/held.nii.gz"]):
    print("@@held", flush=True)
    sys.stdin.read()
"""


def _paused(script: str, marker: str, *args: str) -> subprocess.Popen:
    """A Python process running ``script`` with ``args``, once it has printed ``marker``."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    for line in process.stdout:
        if line.strip() == marker:
            return process
    raise AssertionError(f"the process ended (status {process.wait()}) before printing {marker}")


@pytest.mark.slow
def test_a_killed_dicom_writes_staging_is_removed_by_the_next_run_in_its_folder(tmp_path):
    """SIGKILL of `mmif fuse --format dicom` while it writes (nothing of Python's clean-up runs) leaves a staging
    folder of DICOM files carrying the patient's name. The next run writing into that folder, whatever it writes
    (here a 2D slice), removes it before its work, and also a staging folder whose lock no process holds though
    its name gives a running process id (ids are reused, in a container run after run); it keeps the staging
    folder of a run still writing there."""
    ct, pet = _study(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    held = _paused(_STAGING_HELD, "@@held", str(out))
    try:
        (running,) = out.glob(".mmif-staging-*")
        dicom_run = ["fuse", "--method", "average", "--anatomical", str(ct), "--functional", str(pet), "-o"]
        killed = _paused(_PAUSED_DICOM_WRITE, "@@written", *dicom_run, str(out / "DCM"), "--format", "dicom")
        killed.kill()
        assert killed.wait(timeout=60) == -signal.SIGKILL
        (left,) = set(out.glob(".mmif-staging-*")) - {running}
        (torn,) = left.glob("DCM/IM*.dcm")
        assert b"Phantom^Head" in torn.read_bytes()  # the patient's name, in a file no one asked for
        reused = out / f".mmif-staging-{os.getpid()}-reused"  # a running process's id, and nothing holds the lock
        reused.mkdir()
        (reused / ".lock").touch()
        anatomical, functional = _good_pair(tmp_path)
        assert main(["fuse", "--method", "average", *_pair_args(anatomical, functional, out / "slice.png")]) == 0
        assert not left.exists() and not reused.exists() and running.is_dir()
    finally:
        held.kill()
        held.wait(timeout=60)
    assert sorted(p.name for p in out.iterdir()) == [running.name, "slice.png"]


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, monkeypatch, capfd):
    """As root, permission bits do not stop a write, so the two refusals are simulated: a read-only file system
    (statvfs) and a folder without write permission (os.access)."""
    anatomical, functional = _good_pair(tmp_path)
    (tmp_path / "out").mkdir()
    before = _snapshot(tmp_path)
    read_only = os.statvfs_result((4096,) * 8 + (os.ST_RDONLY, 255))
    with monkeypatch.context() as patch:
        patch.setattr(os, "statvfs", lambda path: read_only)
        assert main(["fuse", "--method", "average", *_fuse_one(tmp_path, anatomical, functional)]) == 1
    assert (
        f"cannot write {tmp_path / 'out' / 'fused.png'}: the folder {tmp_path / 'out'} is on a read-only file system"
        in capfd.readouterr().err
    )
    with monkeypatch.context() as patch:
        patch.setattr(os, "access", lambda path, mode: False)
        assert main(["fuse", "--method", "average", *_fuse_one(tmp_path, anatomical, functional)]) == 1
    assert f"the folder {tmp_path / 'out'} is not writable" in capfd.readouterr().err
    assert _snapshot(tmp_path) == before


def test_path_mistakes_fail_before_the_network_stack_is_imported(tmp_path):
    """A missing input, an output that would be refused or a damaged weights file fail with the standard library
    alone: neither torch nor MONAI is imported (start-up takes seconds; this fails in a fraction of one)."""
    anatomical, functional = _good_pair(tmp_path)
    garbage = tmp_path / "in" / "garbage.pt"
    garbage.write_bytes(b"not weights")
    (tmp_path / "out" / "fused.png").mkdir(parents=True)
    mistakes = [
        ["--anatomical", str(tmp_path / "nowhere.png"), "--functional", str(functional), "-o", str(tmp_path / "o.png")],
        ["--anatomical", str(anatomical), "--functional", str(functional), "-o", str(tmp_path / "out" / "fused.png")],
        [
            "--anatomical",
            str(anatomical),
            "--functional",
            str(functional),
            "-o",
            str(tmp_path / "o.png"),
            "--weights",
            str(garbage),
        ],
        [
            "--anatomical",
            str(tmp_path / "ct.nii.gz"),
            "--functional",
            str(functional),
            "-o",
            str(tmp_path / "o.nii.gz"),
        ],
    ]
    probe = (
        "import json, sys\n"
        "from mmif_monai.cli.main import main\n"
        "codes = [main(['fuse', *args]) for args in json.loads(sys.argv[1])]\n"
        "print(json.dumps({'codes': codes, 'loaded': [m for m in ('torch', 'monai') if m in sys.modules]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(mistakes)], capture_output=True, text=True, timeout=120
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"codes": [1, 1, 1, 1], "loaded": []}, result.stderr
    assert len(result.stderr.strip().splitlines()) == 4 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_another_frame_of_reference_is_fused_when_registered(tmp_path, capfd):
    """Refused without --register (catalogue); with it the volumes are aligned by content, so they may differ."""
    ct, pet = _study(tmp_path)
    frame = generate_uid()
    _edit_series(pet, lambda i, ds: setattr(ds, "FrameOfReferenceUID", frame))
    assert _average_3d(ct, pet, tmp_path / "out" / "fused.nii.gz", "--register") == 0, capfd.readouterr().err
    assert (tmp_path / "out" / "fused_registration.tfm").is_file()


@pytest.mark.parametrize("method", ["mmif-net", "average", "laplacian", "latlrr"])
def test_slices_smaller_than_the_network_fuse_at_their_own_size(tmp_path, method):
    """A 60 x 72 pair (a cropped volume's slices) fuses: MMIF-Net on a zero canvas of 64 x 64, cropped back."""
    crop = (slice(98, 158), slice(92, 164))
    anatomical = _grey(tmp_path, "mri.png", np.asarray(Image.open(MRI))[crop])
    functional = _grey(tmp_path, "ct.png", np.asarray(Image.open(CT))[crop])
    out = tmp_path / "fused.png"
    assert fuse_pair(anatomical, functional, out, "--method", method) == 0
    fused = np.asarray(Image.open(out), dtype=float)
    assert fused.shape == (60, 72) and fused.std() > 5  # not a constant image


def test_mmif_net_on_a_canvas_equals_itself_on_the_padded_slice():
    """Cropping back is exact: a small slice's fusion is the centre of the zero-padded slice's fusion."""
    from mmif_monai.networks.pretrained import load_mmif_net

    network = load_mmif_net().network
    torch.manual_seed(0)
    a, b = torch.rand(1, 1, 60, 72), torch.rand(1, 1, 60, 72)
    with torch.no_grad():
        small = network(a, b)
        padded = network(*(torch.nn.functional.pad(x, [0, 0, 2, 2]) for x in (a, b)))
    torch.testing.assert_close(small, padded[..., 2:62, :], rtol=0, atol=1e-6)


def test_an_error_about_another_file_inside_a_write_keeps_its_own_wording(tmp_path):
    """Only errors about the output (its temporary name or staging folder) are retold as 'cannot write'; a missing
    input read while writing keeps its message, naming that input."""
    from mmif_monai.io.outputs import atomic_output, staged_outputs

    missing = tmp_path / "in" / "weights.pt"
    for stage in (atomic_output(tmp_path / "out.png"), staged_outputs([tmp_path / "out" / "fused.nii.gz"])):
        with pytest.raises(FileNotFoundError) as error, stage:
            missing.read_bytes()
        assert str(missing) in str(error.value) and "cannot write" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary file left
    assert not list((tmp_path / "out").iterdir())


# ------------------------------------------------------------------------------------------------ exclusive writes


def test_an_output_that_appears_while_fusing_is_never_replaced_without_overwrite(tmp_path, monkeypatch, capfd):
    """Issue #34, item 7: two `mmif fuse --pairs ... -o out` runs without --overwrite both passed the check at the
    start, and the later writer replaced the other's files with exit status 0. The check holds at write time: the
    finished file takes its name only if nothing has it yet, so a file that appeared while this run fused (here
    written by a stand-in for the other run) stays as it is, and the run ends with one line naming it."""
    import mmif_monai.jobs.slices as slices

    a, b = _pair_folders(tmp_path, ["1.png", "2.png"])
    out = tmp_path / "out"
    fuse_batch = slices.fuse_batch

    def another_run_writes_meanwhile(*args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / "2.png").write_bytes(b"the other run's result")
        return fuse_batch(*args, **kwargs)

    monkeypatch.setattr(slices, "fuse_batch", another_run_writes_meanwhile)
    assert main(["fuse", "--method", "average", "--pairs", str(a), str(b), "-o", str(out)]) == 1
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line == (
        f"mmif: error: {out / '2.png'}: output exists: it appeared while this run was working (another run writing"
        " there?); it was left as it is: pass --overwrite to replace it"
    )
    assert (out / "2.png").read_bytes() == b"the other run's result"
    assert sorted(p.name for p in out.iterdir()) == ["1.png", "2.png"]  # 1.png fused before; no temporary file
    # with --overwrite the file that appeared is replaced, as any existing output is
    assert main(["fuse", "--method", "average", "--pairs", str(a), str(b), "-o", str(out), "--overwrite"]) == 0
    assert (out / "2.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("appears", ["preview", "series"])
def test_staged_outputs_without_overwrite_leave_an_output_that_appeared_and_none_of_their_own(tmp_path, appears):
    """A volume job's outputs (the fused NIfTI file or DICOM folder and its previews) are moved into place
    together: without --overwrite each takes its name only if nothing has it yet (a folder by mkdir, a file by a
    hard link). When one appeared while the job worked, those of the set already moved are removed again: the
    other run's output stays byte for byte, and no file of this run, nor its staging folder, is left."""
    from mmif_monai.io.outputs import staged_outputs

    series, preview = tmp_path / "DCM", tmp_path / "DCM_axial.png"
    with pytest.raises(FileExistsError) as error:
        with staged_outputs([series, preview], overwrite=False) as (staged_series, staged_preview):
            staged_series.mkdir()
            (staged_series / "IM000001.dcm").write_bytes(b"this run's series")
            staged_preview.write_bytes(b"this run's preview")
            if appears == "preview":
                preview.write_bytes(b"the other run's preview")
            else:
                series.mkdir()
                (series / "IM000001.dcm").write_bytes(b"the other run's series")
    culprit = preview if appears == "preview" else series
    assert str(error.value) == (
        f"{culprit}: output exists: it appeared while this run was working (another run writing there?); it was"
        " left as it is: pass --overwrite to replace it"
    )
    other = {
        "preview": {"DCM_axial.png": b"the other run's preview"},
        "series": {"DCM/IM000001.dcm": b"the other run's series"},
    }
    assert {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == other[
        appears
    ]


# `mmif fuse` that says when it has fused its pairs and waits there (its checks passed) until its stdin closes
_PAUSED_BEFORE_WRITING = """
import sys
import mmif_monai.jobs.slices as slices
from mmif_monai.cli.main import main
fuse_batch = slices.fuse_batch
def fuse_then_wait(*args, **kwargs):
    fused = fuse_batch(*args, **kwargs)
    print("@@fused", flush=True)
    sys.stdin.read()
    return fused
slices.fuse_batch = fuse_then_wait
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder_never_replace_each_others_outputs(tmp_path):
    """Two real `mmif fuse --pairs A B -o out` processes without --overwrite: the first passes its checks and fuses,
    the second runs from start to end meanwhile (exit 0), then the first writes. Before, both exited 0 and the
    first replaced the second's files; now it exits 1 with one line naming the file, and the second's outputs stay
    byte for byte."""
    a, b = _pair_folders(tmp_path, ["1.png", "2.png"])
    out = tmp_path / "out"
    args = ["fuse", "--method", "average", "--pairs", str(a), str(b), "-o", str(out)]
    first = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_BEFORE_WRITING, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert first.stdout is not None
        assert "@@fused\n" in iter(first.stdout.readline, ""), "the first run ended before fusing"
        second = subprocess.run([sys.executable, "-m", "mmif_monai.cli.main", *args], capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        written = _snapshot(out)
        _, stderr = first.communicate(input="", timeout=600)
    finally:
        first.kill()
    assert first.returncode == 1
    assert stderr.strip().splitlines() == [
        f"mmif: error: {out / '1.png'}: output exists: it appeared while this run was working (another run writing"
        " there?); it was left as it is: pass --overwrite to replace it"
    ]
    assert _snapshot(out) == written
