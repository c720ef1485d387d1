"""The checks of a request that need no image library: which inputs and outputs a job has, that the inputs
exist and that the outputs may be written.

The file jobs (:func:`~mmif_monai.jobs.slices.fuse_files`, :func:`~mmif_monai.jobs.volumes.fuse_volume_files`)
and the evaluation (:func:`~mmif_monai.metrics.report.evaluate_folders`) run them first; every ``mmif`` command
runs them before it imports torch and MONAI, so a mistyped path, an unknown name or an output that would be
refused fails in a fraction of a second rather than after a start-up of several seconds. Only the standard
library is imported here.
"""

from __future__ import annotations

import errno
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmif_monai.io.aanlib import PAIR_TYPES
from mmif_monai.io.outputs import check_output_path, check_outputs_spare_inputs, check_writable, remove_stale_staging
from mmif_monai.io.paths import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, VOLUME_SUFFIXES, has_dicom_marker

__all__ = [
    "VOLUME_SUFFIXES",
    "OUTPUT_FORMATS",
    "FUSION_METHOD_NAMES",
    "COMPARISON_METHOD_NAMES",
    "ENGINE_NAMES",
    "SLICE_BATCH",
    "FileJob",
    "is_volume_path",
    "check_inputs_exist",
    "match_pair_folders",
    "dataset_folder_jobs",
    "check_file_jobs",
    "registration_requested",
    "volume_output_paths",
    "check_volume_job",
    "check_weights_file",
    "image_files",
    "check_same_names",
    "source_files",
    "image_names",
    "check_reference",
    "check_protocol_pair",
    "evaluation_output_paths",
    "check_evaluation_job",
    "tracking_store_path",
    "check_tracking_store",
    "phantom_output_paths",
]

#: what a 3D job writes: a NIfTI file or a DICOM series folder
OUTPUT_FORMATS = ("nifti", "dicom")
#: the fusion methods a user can name (``mmif_monai.fusion.methods.available_methods``, spelled out here so that
#: the command line lists them without importing torch; tests/test_cli.py checks the two agree)
FUSION_METHOD_NAMES = ("mmif-net", "average", "max", "laplacian", "dwt", "latlrr")
#: the networks ``mmif compare`` trains (``mmif_monai.studies.COMPARISON_METHODS``, spelled out here for the same
#: reason; tests/test_cli.py checks the two agree)
COMPARISON_METHOD_NAMES = ("densefuse", "ifcnn", "nestfuse", "fusiondn", "fusiongan")
#: what runs MMIF-Net (``mmif_monai.fusion.engines``): ``auto`` (the faster CPU runtime on the CPU, torch on a GPU),
#: torch, or its ONNX export in ONNX Runtime or OpenVINO (CPU)
ENGINE_NAMES = ("auto", "torch", "onnxruntime", "openvino")
#: images (2D pairs or a volume's slices) per network call: above 4 the 3D job's peak memory grows with it (ONNX
#: Runtime keeps the largest call's buffers; a 256x256x180 study: 2.1 GiB at 2 and 4, the average job's own peak,
#: 2.5 GiB at 8, 3.7 GiB at 16, docs/benchmarks.md) while the time per image on the CPU barely changes
SLICE_BATCH = 4


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


def dataset_folder_jobs(dataset_dir: str | Path, output_dir: str | Path) -> list[FileJob]:
    """One job per pair under ``dataset_dir/<pair type>/<modality>/``, written to ``output_dir/<pair type>/``.

    Raises:
        FileNotFoundError: ``dataset_dir`` holds no pair-type folder. ValueError: as :func:`match_pair_folders`.
    """
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    jobs: list[FileJob] = []
    for pair_type, (anat, func) in PAIR_TYPES.items():
        if (dataset_dir / pair_type).is_dir():
            jobs += match_pair_folders(
                dataset_dir / pair_type / anat, dataset_dir / pair_type / func, output_dir / pair_type
            )
    if not jobs:
        raise FileNotFoundError(f"{dataset_dir}: no pair-type folders ({', '.join(PAIR_TYPES)})")
    return jobs


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


def image_files(folder: str | Path) -> dict[str, Path]:
    """Image files of ``folder`` (not recursive) by name without suffix, sorted.

    Raises:
        FileNotFoundError: if the folder does not exist or holds no images.
        ValueError: if two files share a name (e.g. ``1.png`` and ``1.jpg``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in files:
                raise ValueError(f"{folder}: {files[path.stem].name} and {path.name} have the same name")
            files[path.stem] = path
    if not files:
        raise FileNotFoundError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def check_same_names(folder: str | Path, names: set[str], reference: str | Path, expected: set[str]) -> None:
    """Refuse a ``folder`` whose image ``names`` are not the ``expected`` names of the ``reference`` folder.

    Raises:
        ValueError: naming both folders, up to five missing names and five unmatched ones.
    """
    if names != expected:
        missing, extra = sorted(expected - names)[:5], sorted(names - expected)[:5]
        raise ValueError(f"{folder} does not match {reference} by file name: missing {missing}, unmatched {extra}")


def source_files(a_dir: str | Path, b_dir: str | Path) -> tuple[list[str], dict[str, Path], dict[str, Path]]:
    """Matched source names (in :func:`image_names` order) and the two folders' image files by name.

    Raises:
        FileNotFoundError: for a missing or empty folder. ValueError: if the two folders hold different names.
    """
    a_files, b_files = image_files(a_dir), image_files(b_dir)
    check_same_names(b_dir, set(b_files), a_dir, set(a_files))
    return sorted(a_files, key=lambda n: (len(n), n)), a_files, b_files


def image_names(a_dir: str | Path, b_dir: str | Path) -> list[str]:
    """Names (without suffix) of the source pairs, in the order results list their images.

    Raises:
        FileNotFoundError: for a missing or empty folder.
        ValueError: if the two folders hold different names.
    """
    return source_files(a_dir, b_dir)[0]


def check_reference(reference: str | None, methods: Sequence[str]) -> None:
    """Refuse a paired-comparison ``reference`` that is not one of two or more ``methods`` (``None`` passes)."""
    if reference is not None and (reference not in methods or len(methods) < 2):
        raise ValueError(f"the reference {reference!r} needs to be one of several methods scored: {list(methods)}")


def check_protocol_pair(protocol: str, ssim_protocol: str) -> None:
    """Refuse the published scoring protocol with the correct SSIM: the literature SSIM is part of what makes its
    numbers comparable with published tables (``docs/metrics.md``)."""
    if protocol == "published" and ssim_protocol != "literature":
        raise ValueError("the published protocol scores SSIM by the literature protocol; drop --ssim-protocol correct")


def evaluation_output_paths(output_dir: str | Path, reference: str | None = None) -> list[Path]:
    """What an evaluation writes into ``output_dir``: ``metrics.csv``, ``metrics.md``, ``metrics.png`` and, with a
    paired-comparison ``reference``, ``paired.md``."""
    names = ["metrics.csv", "metrics.md", "metrics.png"] + (["paired.md"] if reference is not None else [])
    return [Path(output_dir) / name for name in names]


def check_evaluation_job(
    fused_dirs: Mapping[str, str | Path],
    a_dir: str | Path,
    b_dir: str | Path,
    output_dir: str | Path,
    overwrite: bool,
    reference: str | None = None,
) -> list[Path]:
    """The outputs of an evaluation (:func:`evaluation_output_paths`) once checked: the source folders hold the
    same image names, every fused folder holds them too, the ``reference`` is one of several methods, no output
    lands in a source or fused folder (even with ``overwrite``: the next scoring would find ``metrics.png`` there as
    an image without a partner), and each output may be written.

    Raises:
        FileNotFoundError, ValueError, FileExistsError: naming the folder or file.
    """
    check_reference(reference, list(fused_dirs))
    names = set(image_names(a_dir, b_dir))
    for folder in fused_dirs.values():
        check_same_names(folder, set(image_files(folder)), a_dir, names)
    outputs = evaluation_output_paths(output_dir, reference)
    check_outputs_spare_inputs(outputs, [a_dir, b_dir, *fused_dirs.values()])
    for path in outputs:
        check_output_path(path, overwrite)
    return outputs


def tracking_store_path(uri: str) -> Path | None:
    """The local file or folder an MLflow tracking URI keeps its runs in: the database of ``sqlite:///PATH``
    (``sqlite:////abs/path`` for an absolute one), the folder of ``file:PATH`` or of a plain path; None for a
    server (``http(s)://``, ``databricks``) or another database, whose permissions are its own to check."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    if "://" in uri or uri.startswith("databricks"):
        return None
    return Path(uri)


def check_tracking_store(uri: str) -> None:
    """Refuse a local MLflow store (:func:`tracking_store_path`) that cannot be written, before the evaluation
    scores anything: MLflow would otherwise fail only once it logs, after the scoring, and a read-only SQLite
    store is retried for minutes first. The nearest existing folder must be writable (SQLite writes a journal
    beside its database) and an existing database file too.

    Raises:
        ValueError: naming the store and why.
    """
    path = tracking_store_path(uri)
    if path is None:
        return
    try:
        if path.is_dir() and uri.startswith("sqlite:"):
            raise ValueError(f"cannot write {path}: it is a folder, not a database file")
        check_writable(path / "meta.yaml" if path.is_dir() else path)
        if path.is_file() and not os.access(path, os.W_OK):
            raise ValueError(f"cannot write {path}: the file is read-only")
    except ValueError as error:
        raise ValueError(
            f"MLflow store {uri}: {error}; nothing was scored: give --tracking-uri a store you can write"
        ) from None


def phantom_output_paths(folder: str | Path, output_format: str, anatomical_modality: str = "CT") -> tuple[Path, Path]:
    """Where the head phantom (:mod:`mmif_monai.phantoms`) goes in ``folder``: the anatomical and the PET volume,
    as NIfTI files (``ct.nii.gz`` or ``mr.nii.gz``, ``pet.nii.gz``) or as DICOM series folders (``CT``, ``PT``)."""
    folder = Path(folder)
    if output_format == "nifti":
        return folder / f"{anatomical_modality.lower()}.nii.gz", folder / "pet.nii.gz"
    if output_format == "dicom":
        return folder / "CT", folder / "PT"
    raise ValueError(f"{folder}: unknown output format {output_format!r}; choose from {', '.join(OUTPUT_FORMATS)}")
