"""Checking that the compressed data of a volume file decompresses intact.

gzip (``.nii.gz``, NRRD's ``encoding: gzip``) and zlib (MetaImage's ``CompressedData = True``) keep a checksum of
the data at the end of the stream: gzip's CRC-32, zlib's Adler-32. A reader that stops at the last voxel never
reaches it, so a file damaged in the middle decompresses into wrong voxels without an error: nibabel reads exactly
the header and the data, and ITK's MetaImage and NRRD readers inflate exactly the bytes the image needs.

:func:`checked_gzip` is the stream a NIfTI reader reads the data from; leaving it reads the rest of the stream,
so the CRC is checked without decompressing the file twice. ITK's readers take a file name, not a stream, so
:func:`check_itk_compression` inflates a MetaImage's or NRRD's compressed data once before ITK reads it. MetaImage
data split over several files (``ElementDataFile = LIST`` or a file-name pattern) and NRRD data in several files
are not checked.

Only the standard library is imported.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["DamagedDataError", "gzip_damage_reported", "checked_gzip", "check_itk_compression"]

# bytes read (and decompressed) at a time: bounds the memory of a check whatever the compression ratio
_CHUNK = 1 << 20
# a header longer than this is not a MetaImage or NRRD header: ITK says what the file is
_MAX_HEADER_LINES, _MAX_LINE = 1000, 1 << 16
# zlib's window bits that accept a zlib or a gzip header
_ZLIB_OR_GZIP = zlib.MAX_WBITS | 32


class DamagedDataError(ValueError):
    """Compressed data that fails its checksum, does not decompress, or ends early; the message names the file."""


def _damaged(path: str | Path, kind: str, error: BaseException | str) -> DamagedDataError:
    detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return DamagedDataError(f"{path}: damaged file: its {kind} data does not decompress intact ({detail})")


@contextmanager
def gzip_damage_reported(path: str | Path) -> Iterator[None]:
    """Retell the errors of a gzip stream of ``path`` read inside (a failed CRC, data that does not decompress, a
    stream cut short) as :class:`DamagedDataError` naming ``path``."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise _damaged(path, "gzip", error) from error


@contextmanager
def checked_gzip(path: str | Path) -> Iterator[gzip.GzipFile]:
    """Yield ``path`` opened as a gzip stream; on leaving, read the stream to its end, which checks its CRC-32.

    Raises:
        DamagedDataError: naming ``path``, when the data fails the CRC, does not decompress or is cut short,
            while the caller reads or at the end.
    """
    with gzip_damage_reported(path), gzip.open(path, "rb") as stream:
        yield stream
        while stream.read(_CHUNK):  # after an image's data nothing is left but the checksum
            pass


def _inflate_whole(path: Path, source: Path, offset: int, skip_lines: int, kind: str) -> None:
    """Inflate the zlib or gzip stream in ``source`` from ``offset`` (after ``skip_lines`` lines) to its end."""
    decompressor = zlib.decompressobj(_ZLIB_OR_GZIP)
    with open(source, "rb") as file:
        file.seek(offset)
        for _ in range(skip_lines):
            file.readline()
        try:
            while not decompressor.eof and (chunk := file.read(_CHUNK)):
                while chunk and not decompressor.eof:
                    decompressor.decompress(chunk, _CHUNK)
                    chunk = decompressor.unconsumed_tail
        except zlib.error as error:
            raise _damaged(path, kind, error) from error
    if not decompressor.eof:
        raise _damaged(path, kind, "the file ends before its compressed stream does")


def _header_fields(file: BinaryIO, separator: str, last_key: str | None) -> tuple[dict[str, str], bool]:
    """``key<separator>value`` lines (keys lower case) up to ``last_key`` (included) or a blank line; and whether
    either ended the header (data follows it in this file)."""
    fields: dict[str, str] = {}
    for _ in range(_MAX_HEADER_LINES):
        line = file.readline(_MAX_LINE).decode("latin-1")
        if not line:
            return fields, False
        if not line.strip():
            return fields, True
        if line.startswith("#") or ":=" in line:  # NRRD comments and key/value pairs
            continue
        key, _, value = line.partition(separator)
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == last_key:
            return fields, True
    return {}, False


def _single_file(name: str) -> bool:
    """Whether a data-file field names one file (not ``LIST`` or a numbered pattern)."""
    return bool(name) and name.upper() != "LIST" and "%" not in name and len(name.split()) == 1


def check_itk_compression(path: str | Path) -> None:
    """Inflate the compressed data of a MetaImage (``.mha``, ``.mhd``: ``CompressedData = True``) or NRRD
    (``.nrrd``, ``.nhdr``: ``encoding: gzip``) file once to its end, so that its checksum is checked; any other
    file, or one whose header this does not recognise, passes (ITK's reader then says what it finds).

    Raises:
        DamagedDataError: naming ``path``.
    """
    path = Path(path)
    name = path.name.lower()
    with open(path, "rb") as file:
        if name.endswith((".mha", ".mhd")):
            fields, ended = _header_fields(file, "=", last_key="elementdatafile")
            compressed, kind = fields.get("compresseddata", "").lower() == "true", "zlib"
            data_file, skip_lines = fields.get("elementdatafile", ""), 0
            attached = data_file.upper() == "LOCAL"
        elif name.endswith((".nrrd", ".nhdr")) and file.readline(_MAX_LINE).startswith(b"NRRD"):
            fields, ended = _header_fields(file, ":", last_key=None)
            compressed, kind = fields.get("encoding", "").lower() in ("gzip", "gz"), "gzip"
            data_file = fields.get("data file") or fields.get("datafile") or ""
            skip_lines = int(fields.get("line skip") or fields.get("lineskip") or 0)
            attached = not data_file
        else:
            return
        offset = file.tell()
    if not compressed:
        return
    if attached and ended:
        _inflate_whole(path, path, offset, skip_lines, kind)
    elif _single_file(data_file):
        _inflate_whole(path, path.parent / data_file, 0, skip_lines, kind)
