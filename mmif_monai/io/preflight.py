"""The checks of a fusion request that need no image library: which inputs and outputs a job has, that the inputs
exist and that the outputs may be written.

The file jobs (:func:`~mmif_monai.jobs.slices.fuse_files`, :func:`~mmif_monai.jobs.volumes.fuse_volume_files`)
run them first; ``mmif fuse`` runs them before it imports the network stack, so a mistyped path or an output that
would be refused fails in a fraction of a second rather than after a start-up of several seconds. Only the
standard library is imported here.
"""

from __future__ import annotations

import errno
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmif_monai.io.outputs import check_output_path, check_outputs_spare_inputs, remove_stale_staging
from mmif_monai.io.paths import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, VOLUME_SUFFIXES, has_dicom_marker

__all__ = [
    "VOLUME_SUFFIXES",
    "OUTPUT_FORMATS",
    "FUSION_METHOD_NAMES",
    "FileJob",
    "is_volume_path",
    "check_inputs_exist",
    "match_pair_folders",
    "check_file_jobs",
    "registration_requested",
    "volume_output_paths",
    "check_volume_job",
    "check_weights_file",
]

#: what a 3D job writes: a NIfTI file or a DICOM series folder
OUTPUT_FORMATS = ("nifti", "dicom")
#: the fusion methods a user can name (``mmif_monai.fusion.methods.available_methods``, spelled out here so that
#: the command line lists them without importing torch; tests/test_cli.py checks the two agree)
FUSION_METHOD_NAMES = ("mmif-net", "average", "max", "laplacian", "dwt", "latlrr")


@dataclass(frozen=True)
class FileJob:
    """One pair of input files and the path its fused image goes to."""

    anatomical: Path
    functional: Path
    output: Path


def is_volume_path(path: str | Path) -> bool:
    """Whether ``path`` names a 3D input: a file with a volume suffix, or a folder (a DICOM series or study)."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(VOLUME_SUFFIXES)


def check_inputs_exist(paths: Sequence[str | Path]) -> None:
    """Raises FileNotFoundError (the OS's wording) for the first of ``paths`` that does not exist."""
    for path in paths:
        if not Path(path).expanduser().exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))


def _is_slice_file(path: Path) -> bool:
    """Whether ``path`` is a 2D slice file: an image, or a single DICOM file (by suffix; with another suffix or
    none, such as a name made of a UID, by its ``DICM`` marker)."""
    if not path.is_file() or path.name.startswith(".") or path.name.upper() == "DICOMDIR":  # DICOMDIR: an index
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES or has_dicom_marker(path)


def _fused_name(name: str) -> str:
    """The PNG a slice file is fused into: its suffix replaced, or ``.png`` added to a name whose dots are not a
    suffix (``1.2.840.10008.5`` must not become ``1.2.840.10008.png``, the name of its neighbours)."""
    known = Path(name).suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES
    return (Path(name).stem if known else name) + ".png"


def match_pair_folders(anatomical_dir: str | Path, functional_dir: str | Path, output_dir: str | Path) -> list[FileJob]:
    """Jobs for the slice files (images, single DICOM files) with the same name in both folders; outputs keep the
    input names, as PNG.

    Raises:
        FileNotFoundError: a folder is missing. ValueError: no names in common, or names present in one only,
        or the output folder is an existing file.
    """
    dirs = [Path(anatomical_dir), Path(functional_dir)]
    for folder in dirs:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder")
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ValueError(f"{output_dir}: the output folder is an existing file")
    names = [{p.name for p in d.iterdir() if _is_slice_file(p)} for d in dirs]
    if names[0] != names[1]:
        unmatched = sorted(names[0] ^ names[1])[:3]
        raise ValueError(f"{dirs[0]} and {dirs[1]}: files without a partner, e.g. {unmatched}")
    if not names[0]:
        raise ValueError(f"{dirs[0]}: no images ({', '.join(IMAGE_SUFFIXES)}) or DICOM files")
    out = Path(output_dir)
    return [FileJob(dirs[0] / n, dirs[1] / n, out / _fused_name(n)) for n in sorted(names[0])]


def _remove_killed_runs_staging(outputs: Sequence[str | Path]) -> None:
    """Remove the staging folders a killed run left beside these outputs (:func:`remove_stale_staging`): they may
    hold a patient's DICOM files, and the next run in their folder is the first that can tell they are stale."""
    for folder in dict.fromkeys(Path(output).parent for output in outputs):
        remove_stale_staging(folder)


def check_file_jobs(jobs: Sequence[FileJob], overwrite: bool) -> None:
    """Refuse missing inputs, and outputs that are inputs, that two jobs share (``a.png`` and ``a.tif`` in one
    folder), that are not ``.png``, that are symbolic links (which could lead outside the output folder), that are
    folders, or that exist (unless ``overwrite``). A killed run's staging folders beside the outputs are removed
    first."""
    _remove_killed_runs_staging([job.output for job in jobs])
    check_inputs_exist([path for job in jobs for path in (job.anatomical, job.functional)])
    check_outputs_spare_inputs(
        [job.output for job in jobs], [path for job in jobs for path in (job.anatomical, job.functional)]
    )
    claimed: dict[Path, Path] = {}
    for job in jobs:
        other = claimed.setdefault(job.output.resolve(), job.anatomical)
        if other != job.anatomical:
            raise ValueError(f"{job.output}: both {other.name} and {job.anatomical.name} would be fused into this file")
        if job.output.suffix.lower() != ".png":
            raise ValueError(f"{job.output}: fused slices are written as PNG; give an output ending in .png")
        if job.output.is_symlink():
            raise ValueError(f"{job.output}: output is a symbolic link (to {job.output.readlink()}); refusing to write")
        check_output_path(job.output, overwrite)


def registration_requested(register: bool | str | None) -> bool:
    """Whether ``register`` (``mmif fuse --register``'s value) asks for an image registration: False, None and
    ``"none"`` do not."""
    return register not in (False, None, "none")


def volume_output_paths(output: str | Path, output_format: str, register: bool | str) -> dict[str, Path]:
    """Where a 3D job writes: ``fused`` (the NIfTI file or DICOM folder), the three previews beside it
    (``<name>_axial.png``...) and, with registration, ``transform`` (``<name>_registration.tfm``)."""
    output = Path(output)
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"{output}: unknown output format {output_format!r}; choose from {', '.join(OUTPUT_FORMATS)}")
    name = output.name
    if output_format == "nifti":
        if not name.lower().endswith(NIFTI_SUFFIXES):
            raise ValueError(f"{output}: a NIfTI output must end in .nii or .nii.gz (or use --format dicom)")
        name = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]
    elif output.suffix.lower() in (*NIFTI_SUFFIXES, ".gz", ".png", ".dcm"):
        raise ValueError(f"{output}: a DICOM output is a folder; give a folder name without a file suffix")
    paths = {"fused": output}
    paths.update({view: output.with_name(f"{name}_{view}.png") for view in ("axial", "coronal", "sagittal")})
    if registration_requested(register):
        paths["transform"] = output.with_name(f"{name}_registration.tfm")
    return paths


def check_volume_job(
    anatomical: str | Path,
    functional: str | Path,
    output: str | Path,
    output_format: str,
    register: bool | str,
    overwrite: bool,
) -> dict[str, Path]:
    """The outputs of a 3D job (:func:`volume_output_paths`) once checked: the inputs exist, no output touches
    an input, and each output may be written (a DICOM output only over a fused series of ours). A killed run's
    staging folders beside the outputs are removed first."""
    paths = volume_output_paths(output, output_format, register)
    _remove_killed_runs_staging(list(paths.values()))
    check_inputs_exist([anatomical, functional])
    check_outputs_spare_inputs(list(paths.values()), [anatomical, functional])
    for key, path in paths.items():
        check_output_path(path, overwrite, kind="series" if key == "fused" and output_format == "dicom" else "file")
    return paths


def check_weights_file(path: str | Path) -> Path:
    """Refuse a weights file that is missing, empty, or neither of torch.save's formats (a zip archive, or a bare
    pickle of protocol 2 or later, which starts with byte 0x80), before torch is imported to read it.

    Raises:
        FileNotFoundError, ValueError: naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty; not a PyTorch weights file")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as file:
            if file.read(1) != b"\x80":
                raise ValueError(f"{path}: not a PyTorch weights file (neither torch.save's zip format nor a pickle)")
    return path
