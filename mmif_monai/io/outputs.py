"""Where outputs may go and how they are written.

The checks here keep an output from destroying anything this program did not write, even with ``--overwrite``:
an output never replaces an input, a file never replaces a folder (nor a folder a file), and a DICOM series
folder is replaced only when it holds nothing but a fused series written by mmif. Writes are atomic: one file
through a temporary name beside it (:func:`atomic_output`), several outputs staged in a hidden folder beside
them and renamed together (:func:`staged_outputs`). Without ``overwrite`` a write is also exclusive: the finished
file takes its name only if nothing has that name yet, so an output that appeared after the checks (another run
writing there) is never replaced. Staging folders left by a killed run are removed by the next run that writes
there. OS errors name the output the user asked for, never a temporary name.

Only the standard library is imported at module level (pydicom lazily, for the series check), so the command
line can check its outputs before it loads the network stack.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "OUTPUT_KINDS",
    "FUSED_SERIES_MANUFACTURER",
    "check_output_path",
    "check_writable",
    "check_outputs_spare_inputs",
    "check_replaceable_series",
    "atomic_output",
    "staged_outputs",
    "remove_stale_staging",
]

#: what an output path is: a ``"file"``, or a ``"series"`` (a folder of DICOM files that this program writes)
OUTPUT_KINDS = ("file", "series")
#: Manufacturer (0008,0070) of the fused series this program writes: with ImageType FUSED, how it knows its own
FUSED_SERIES_MANUFACTURER = "mmif-monai"
_FUSED_FILE_NAME = re.compile(r"IM\d{6}\.dcm")
_STAGING_PREFIX = ".mmif-staging-"
# the file in a staging folder its run holds a lock on (fcntl.flock) while it runs
_STAGING_LOCK = ".lock"


def _concerns(error: OSError, places: Sequence[Path]) -> bool:
    """Whether the OS error is about writing one of ``places`` (an output, its temporary file or staging folder),
    or names no file at all (a writer's "no space left"). An error about another file, such as a missing input
    read inside the write, keeps its own wording."""
    if error.filename is None:
        return error.errno is not None
    name = Path(os.fsdecode(error.filename)).absolute()
    return any(name == place or place in name.parents for place in (p.absolute() for p in places))


def _write_error(path: Path, error: OSError) -> OSError:
    """``error`` retold about ``path``, the output the user named, without the temporary names the OS saw."""
    reason = error.strerror or type(error).__name__
    return type(error)(f"cannot write {path}: {reason}")


def check_writable(path: str | Path) -> None:
    """Refuse an output whose nearest existing folder is not writable (read-only file system, or no write
    permission), before any work is done.

    Raises:
        ValueError: ``cannot write <path>: <why>``.
    """
    path = Path(path)
    anchor = path.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise ValueError(f"cannot write {path}: {anchor} is a file, not a folder")
    if hasattr(os, "statvfs") and os.statvfs(anchor).f_flag & os.ST_RDONLY:
        raise ValueError(f"cannot write {path}: the folder {anchor} is on a read-only file system")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: the folder {anchor} is not writable")


def check_replaceable_series(folder: str | Path) -> None:
    """Refuse to replace ``folder`` unless everything in it is a fused series this program wrote: files
    ``IM000001.dcm``... of one SeriesInstanceUID, with Manufacturer :data:`FUSED_SERIES_MANUFACTURER` and ImageType
    ``FUSED``. Anything else (another series, a subfolder, notes) would be deleted with it.

    Raises:
        ValueError: naming the folder and up to three of the entries it will not delete.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    foreign: list[str] = []
    series_uids: set[str] = set()
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink() or not entry.is_file() or not _FUSED_FILE_NAME.fullmatch(entry.name):
            foreign.append(entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
            continue
        try:
            header = dcmread(
                entry, stop_before_pixels=True, specific_tags=["Manufacturer", "ImageType", "SeriesInstanceUID"]
            )
        except (InvalidDicomError, OSError, ValueError, EOFError):
            foreign.append(entry.name)
            continue
        if header.get("Manufacturer") != FUSED_SERIES_MANUFACTURER or "FUSED" not in list(header.get("ImageType", [])):
            foreign.append(entry.name)
            continue
        series_uids.add(str(header.get("SeriesInstanceUID", "")))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ValueError(
            f"{folder}: --overwrite replaces only a fused series written by mmif, and this folder also holds "
            f"{shown}; nothing was changed: choose a new output folder"
        )
    if len(series_uids) > 1:
        raise ValueError(
            f"{folder}: holds {len(series_uids)} fused series, not one; --overwrite replaces a single fused series"
        )


def check_output_path(path: str | Path, overwrite: bool, kind: str = "file") -> Path:
    """Check that ``path`` may be written as an output of ``kind`` (:data:`OUTPUT_KINDS`).

    An existing output is replaced only with ``overwrite``, and never when it is of the other kind (a folder where
    a file goes, a file where a series folder goes), nor when it is a folder holding anything but a fused series
    written by this program (:func:`check_replaceable_series`). The nearest existing folder must be writable.

    Raises:
        FileExistsError: ``path`` exists and not ``overwrite``. ValueError: any refusal above, naming ``path``.
    """
    path = Path(path)
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {', '.join(OUTPUT_KINDS)}")
    if path.exists() and not path.is_symlink():
        if kind == "file" and path.is_dir():
            raise ValueError(
                f"{path}: output is an existing folder; a file never replaces a folder, even with --overwrite"
            )
        if kind == "series" and not path.is_dir():
            raise ValueError(
                f"{path}: output is an existing file; a DICOM series folder never replaces a file, "
                "even with --overwrite"
            )
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path}: output exists; pass --overwrite to replace it")
        if kind == "series" and path.is_dir():
            check_replaceable_series(path)
    check_writable(path)
    return path


def check_outputs_spare_inputs(
    outputs: Sequence[str | Path], inputs: Sequence[str | Path], folders: Sequence[str | Path] = ()
) -> None:
    """Refuse, even with ``--overwrite``, an output that is an input, lies inside an input folder (a DICOM
    series), or is a folder holding an input: writing it would modify or delete the input.

    ``folders`` are output folders that files are written into (a bundle workflow's ``output_dir``): one is refused
    when it is an input or lies inside an input folder (a data set); one holding the inputs is not, since writing
    into it adds files beside them and replaces none.

    Raises:
        ValueError: naming the output and the input.
    """
    sources = [Path(path).resolve() for path in inputs]
    for output in outputs:
        target = Path(output).resolve()
        for source in sources:
            if target == source or source in target.parents or target in source.parents:
                raise ValueError(
                    f"{output}: writing this output would modify the input {source}; inputs are never modified"
                )
    for folder in folders:
        target = Path(folder).resolve()
        for source in sources:
            if target == source or source in target.parents:
                raise ValueError(
                    f"{folder}: writing into this folder would modify the input {source}; inputs are never modified"
                )


def _new_file_beside(path: Path) -> Path:
    """Create an empty, uniquely named hidden file beside ``path`` (same suffix, so writers pick the same format).

    Created with mode 0666, so the umask gives it the permissions of any new file; ``tempfile.mkstemp`` would
    make it owner-only (0600), and the rename would hand that mode to the output.
    """
    while True:
        candidate = path.with_name(f".{path.stem}-{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return candidate
        except FileExistsError:
            continue


def _appeared(path: Path) -> FileExistsError:
    """The error of an exclusive write whose output exists by now, though the checks before the work found none."""
    return FileExistsError(
        f"{path}: output exists: it appeared while this run was working (another run writing there?); "
        "it was left as it is: pass --overwrite to replace it"
    )


def _claim(finished: Path, path: Path) -> None:
    """Give ``finished`` (a complete file, or a staged folder) the name ``path`` only if nothing has that name yet,
    checked and done in one step by the OS: a rename would replace whatever appeared there since the checks.

    A file is hard-linked to ``path`` (``link`` fails on any existing name, a dangling symbolic link included) and
    its temporary name dropped; where the file system has no hard links, ``path`` is created exclusively
    (``O_EXCL``) and the finished file renamed onto that empty claim. A folder claims ``path`` as an empty folder
    (``mkdir`` is exclusive) and is renamed onto it.

    Raises:
        FileExistsError: ``path`` exists (:func:`_appeared`); ``finished`` is left as it is.
    """
    try:
        if finished.is_dir():
            os.mkdir(path)
        else:
            try:
                os.link(finished, path)
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                    raise
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            else:
                os.unlink(finished)
                return
    except FileExistsError:
        raise _appeared(path) from None
    os.replace(finished, path)


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    A reader never sees a half-written file, and a failure leaves any earlier file untouched. The file gets the
    permissions of any newly created file (0666 less the umask), not the owner-only mode of a temporary file.
    Without ``overwrite`` the finished file takes the name ``path`` only if nothing has it yet (:func:`_claim`):
    an output that appeared while this run worked (another run writing the same name) is left as it is.

    Raises:
        OSError: of the type the OS raised, saying ``cannot write <path>: <reason>`` when it is about the write.
        FileExistsError: without ``overwrite``, ``path`` appeared meanwhile; nothing was written.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_file_beside(path)
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            _claim(tmp, path)
    except OSError as error:
        if not _concerns(error, [path] if tmp is None else [path, tmp]):
            raise
        raise _write_error(path, error) from error
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # gone already after a successful rename


def _lock_staging(folder: Path) -> int:
    """Hold a lock on ``folder`` (a new staging folder) for as long as the returned descriptor stays open: the
    kernel releases it when the process ends, however it ends, so a later run can tell a killed run's staging
    from a running one's whatever process ids the system reuses. The lock file gets its name only once locked."""
    unlocked = folder / f"{_STAGING_LOCK}.new"
    descriptor = os.open(unlocked, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.rename(unlocked, folder / _STAGING_LOCK)
    return descriptor


def _staging_is_stale(folder: Path) -> bool:
    """A staging folder is stale when nothing holds its lock (its run ended without removing it: killed). One
    without a lock file is an instant old (its run is still taking the lock) unless the process named in it
    (``.mmif-staging-<pid>-...``) no longer runs."""
    try:
        descriptor = os.open(folder / _STAGING_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        pid = folder.name[len(_STAGING_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's running process
            pass
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a running process holds it
    finally:
        os.close(descriptor)  # also releases the lock just taken
    return True


def remove_stale_staging(folder: str | Path) -> list[Path]:
    """Delete the staging folders a killed run of this program left in ``folder`` (torn DICOM files with patient
    names in them, whole previews); those of running processes are kept. Every run writing into ``folder`` calls
    this before its work (:mod:`mmif_monai.io.preflight`) and again before it stages its outputs, so a killed run's
    files stay only until the next run there. Returns the removed folders."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.glob(f"{_STAGING_PREFIX}*"):
        if entry.is_dir() and not entry.is_symlink() and _staging_is_stale(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _remove_claimed(paths: Sequence[Path]) -> None:
    """Remove outputs this run has just claimed (:func:`_claim`) when a later one of its set could not be."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def staged_outputs(paths: Sequence[str | Path], overwrite: bool = True) -> Iterator[list[Path]]:
    """Yield staging paths (files or folders) for ``paths``; on success move each onto its final path.

    The staging paths sit in hidden temporary folders beside the outputs (same file system, so the moves are
    renames), one per folder for this run alone, named with this process's id and locked while it runs, so a
    later run can tell a killed run's leftovers from a running one's and remove them (:func:`remove_stale_staging`).
    A failure while writing removes them and leaves any earlier outputs untouched. With ``overwrite`` an existing
    output is replaced (callers check it first with :func:`check_output_path`); without, each output takes its
    name only if nothing has it yet (:func:`_claim`), and if one appeared while this run worked (another run), the
    outputs of this set already moved are removed again and nothing of the other run's is replaced.

    Raises:
        OSError: of the type the OS raised, saying ``cannot write <output>: <reason>``.
        FileExistsError: without ``overwrite``, an output appeared meanwhile; none of this set is left written.
    """
    targets = [Path(p) for p in paths]
    staging_dirs: dict[Path, Path] = {}
    locks: list[int] = []
    try:
        for target in targets:
            if target.parent not in staging_dirs:
                target.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_staging(target.parent)
                prefix = f"{_STAGING_PREFIX}{os.getpid()}-"
                staging_dirs[target.parent] = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
                locks.append(_lock_staging(staging_dirs[target.parent]))
        staged = [staging_dirs[t.parent] / t.name for t in targets]
        yield staged
        claimed: list[Path] = []
        for source, target in zip(staged, targets):
            if not overwrite:
                try:
                    _claim(source, target)
                except FileExistsError:
                    _remove_claimed(claimed)
                    raise
                claimed.append(target)
                continue
            if target.is_symlink() or target.is_dir():
                # move an old series folder (or a link) aside first: a rename replaces a file, not a folder
                os.replace(target, staging_dirs[target.parent] / f".replaced-{target.name}")
            os.replace(source, target)
    except OSError as error:
        if not _concerns(error, [*targets, *staging_dirs.values()]):
            raise
        raise _write_error(targets[0], error) from error  # the first output is the one the user named
    finally:
        for folder in staging_dirs.values():
            shutil.rmtree(folder, ignore_errors=True)
        for descriptor in locks:  # after the removal: until then the folders are this run's
            os.close(descriptor)
