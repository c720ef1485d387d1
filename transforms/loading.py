"""Loading any of the project's image formats through MONAI's ``LoadImage`` into a channel-first ``MetaTensor``.

The reader is chosen from the path:

=====================================================  =================================================
path                                                   reader
=====================================================  =================================================
``.png .jpg .jpeg .bmp .tif .tiff``                    ``SliceReader``: ``PILReader(reverse_indexing=False)``,
                                                       grey or RGB; a multi-page TIFF gives its first page
``.nii .nii.gz``                                       ``CheckedNibabelReader``: ``NibabelReader`` that checks
                                                       a ``.nii.gz`` file's gzip CRC-32
``.mha .mhd .nrrd .nhdr``                              ``CheckedITKReader``: ``ITKReader`` that checks compressed
                                                       data's checksum first
``.dcm .dicom .ima``, a folder (a DICOM series), or a  ``PydicomReader(prune_metadata=False)``
file with the ``DICM`` preamble marker
=====================================================  =================================================

Orientation: MONAI's ``PILReader`` swaps the two axes by default (``reverse_indexing=True``) to index 2D images
``(x, y)`` like the medical readers. The slice images here are not tied to a patient coordinate frame and fused
outputs are written back as images, so they are kept in their natural row-major ``(H, W)`` order: pixel ``[r, c]``
of the loaded tensor is pixel ``(x=c, y=r)`` of the file, and a saved result lines up with its input.
The medical formats keep MONAI's conventions (``(x, y[, z])`` indexing, RAS affine).

Metadata added to each image: ``meta["source_dtype"]`` (the dtype the file stored, e.g. ``"uint8"``, before the cast
to ``dtype``; :class:`~mmif_monai.transforms.intensity.ModalityNormalize` uses it to recognise 8-bit display
images) and ``meta["modality"]`` when it is given or the DICOM header has one. The full DICOM header is kept in the
DICOM JSON model (keys such as ``"00541001"``) so that :func:`~mmif_monai.transforms.intensity.suv_scale_factor` can
read it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, PathLike
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import ITKReader, NibabelReader, PILReader, PydicomReader
from monai.data.image_reader import ImageReader
from monai.data.meta_tensor import MetaTensor
from monai.transforms.io.array import LoadImage
from monai.transforms.transform import MapTransform, Transform
from monai.utils import MetaKeys, convert_data_type, convert_to_tensor
from monai.utils.misc import ensure_tuple, ensure_tuple_rep
from nibabel.arrayproxy import ArrayProxy
from PIL import Image

from mmif_monai.io.compressed import DamagedDataError, check_itk_compression, checked_gzip, gzip_damage_reported
from mmif_monai.io.paths import DICOM_SUFFIXES, IMAGE_SUFFIXES, ITK_SUFFIXES, NIFTI_SUFFIXES, has_dicom_marker

from .meta import MODALITY_KEY, SOURCE_DTYPE_KEY, canonical_modality, modality_from_meta

__all__ = [
    "ImageLoadError",
    "SliceReader",
    "CheckedNibabelReader",
    "CheckedITKReader",
    "has_dicom_marker",
    "reader_for_path",
    "is_colour",
    "LoadModality",
    "LoadModalityd",
]

# PIL modes passed through unchanged: grey (8/16/32-bit integer, float) and 8-bit RGB
_PIL_KEPT_MODES = ("L", "RGB", "I;16", "I", "F")


class ImageLoadError(ValueError):
    """An image file exists but cannot be read, or holds NaN/Inf; the message is one line naming the file."""


def _grey_or_rgb(image: Image.Image) -> Image.Image:
    """Convert a PIL image to one grey or three RGB channels, the two layouts the fusion pipeline handles.

    Alpha is dropped (not composited): the slices are opaque and an alpha channel is not image content. Palette images
    become RGB, since a palette may be a colour map (pseudo-colour PET/SPECT).
    """
    if image.mode in _PIL_KEPT_MODES:
        return image
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode.startswith("I;16"):  # byte-order variants of 16-bit grey
        return image.convert("I")
    return image.convert("RGB")


class SliceReader(PILReader):
    """
    ``PILReader`` for 2D slice images: ``(H, W[, C])`` array order (``reverse_indexing=False``), a matching
    ``spatial_shape``, one grey or three RGB channels, and a writable array.
    """

    def __init__(self) -> None:
        super().__init__(converter=_grey_or_rgb, reverse_indexing=False)

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        data, meta = super().get_data(img)
        # PILReader records (width, height) whatever the axis order
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(data.shape[:2])
        # np.asarray of a PIL image is a read-only view of PIL's buffer; torch needs memory it may write to
        return np.array(data), meta


class CheckedNibabelReader(NibabelReader):
    """``NibabelReader`` that refuses a ``.nii.gz`` file whose gzip data fails its CRC-32 or is cut short.

    nibabel reads exactly the header and the voxels and never reaches the checksum at the end of the stream, so a
    file damaged in the middle gives wrong voxels without an error. Here the voxels are read from a stream that is
    then read to its end (:func:`~mmif_monai.io.compressed.checked_gzip`): the file is decompressed once.
    """

    def read(self, data, **kwargs):
        # damage near the start of a small file already shows while nibabel reads the header
        names = ensure_tuple(data)
        with gzip_damage_reported(names[0] if len(names) == 1 else ", ".join(map(str, names))):
            return super().read(data, **kwargs)

    def _get_array_data(self, img, filename):
        if not str(filename).lower().endswith(".gz"):
            return super()._get_array_data(img, filename)
        proxy = img.dataobj
        spec = (proxy.shape, proxy.dtype, proxy.offset, proxy.slope, proxy.inter)
        with checked_gzip(filename) as stream:
            return np.asanyarray(ArrayProxy(stream, spec, mmap=False, order=proxy.order))


class CheckedITKReader(ITKReader):
    """``ITKReader`` that first refuses a MetaImage or NRRD file whose compressed data fails its checksum
    (:func:`~mmif_monai.io.compressed.check_itk_compression`; ITK's readers stop at the last voxel too)."""

    def read(self, data, **kwargs):
        for name in ensure_tuple(data):
            if Path(name).is_file():
                check_itk_compression(name)
        return super().read(data, **kwargs)


def reader_for_path(path: PathLike) -> ImageReader:
    """A new MONAI reader for ``path``, chosen by its suffix (a folder is read as a DICOM series).

    Raises:
        ImageLoadError: for a file with an unknown suffix that is not DICOM.
    """
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or name.endswith(DICOM_SUFFIXES):
        # the full header, not just the geometry tags, so modality and SUV attributes stay available
        return PydicomReader(prune_metadata=False)
    if name.endswith(IMAGE_SUFFIXES):
        return SliceReader()
    if name.endswith(NIFTI_SUFFIXES):
        return CheckedNibabelReader()
    if name.endswith(ITK_SUFFIXES):
        return CheckedITKReader()
    if has_dicom_marker(path):  # DICOM files often have no suffix at all
        return PydicomReader(prune_metadata=False)
    raise ImageLoadError(
        f"{path}: unsupported image format (expected one of "
        f"{' '.join(IMAGE_SUFFIXES + NIFTI_SUFFIXES + ITK_SUFFIXES + DICOM_SUFFIXES)} or a DICOM file/folder)"
    )


def _one_line(error: BaseException) -> str:
    """The first non-empty line of an exception message, prefixed with its type."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def is_colour(img: NdarrayOrTensor, atol: float = 0.0) -> bool:
    """Whether a channel-first image is colour: three channels that are not all equal (within ``atol``).

    A grey slice saved as RGB has three identical channels and is treated as grey.
    """
    if img.shape[0] != 3:
        return False
    channels = convert_to_tensor(img, track_meta=False).to(torch.float64)
    return not all(torch.allclose(channels[0], channels[c], rtol=0.0, atol=atol) for c in (1, 2))


class LoadModality(Transform):
    """
    Load an image file or DICOM series folder as a channel-first ``MetaTensor``, choosing the reader from the path.

    2D slice images become ``(1, H, W)`` (grey) or ``(3, H, W)`` (RGB) with their stored values (0-255 for 8-bit);
    see the module docstring for readers, orientation and the metadata added.

    Args:
        reader: a MONAI ``ImageReader`` instance to use for every path, or None to choose one per path
            (:func:`reader_for_path`).
        ensure_channel_first: move/add the channel dimension first (``EnsureChannelFirst``).
        dtype: data type of the returned image; None keeps the stored type.
        modality: modality name (see :data:`~mmif_monai.transforms.meta.MODALITY_ALIASES`) written to
            ``meta["modality"]``; None to take it from the DICOM header, where there is one.

    Raises:
        FileNotFoundError: the path does not exist.
        ImageLoadError: (a ``ValueError``) the file cannot be read, holds NaN/Inf values or complex values.
        DamagedDataError: (a ``ValueError``) the file's compressed data fails its checksum or is cut short.
    """

    def __init__(
        self,
        reader: ImageReader | None = None,
        ensure_channel_first: bool = True,
        dtype: DtypeLike | None = np.float32,
        modality: str | None = None,
    ) -> None:
        self.reader = reader
        self.dtype = dtype
        self.modality = None if modality is None else canonical_modality(modality)
        # the reader is always passed per call, so LoadImage's own reader registry is never consulted; dtype=None
        # keeps the stored dtype until it has been recorded in the metadata
        self._loader = LoadImage(image_only=True, dtype=None, ensure_channel_first=ensure_channel_first)

    def __call__(self, filename: PathLike, modality: str | None = None) -> torch.Tensor:
        """
        Args:
            filename: an image file, or a folder holding one DICOM series.
            modality: overrides the modality given at construction, for this call.
        """
        path = Path(filename).expanduser()
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        reader = reader_for_path(path) if self.reader is None else self.reader
        try:
            img = self._loader(path, reader=reader)
        except DamagedDataError:  # names the file and the damage already
            raise
        except Exception as e:  # the reader libraries raise many unrelated types for a bad file; report them as one
            raise ImageLoadError(f"{path}: cannot read with {type(reader).__name__} ({_one_line(e)})") from e
        if img.is_complex():  # a cast to float would keep the real part alone, silently
            raise ImageLoadError(
                f"{path}: complex-valued data ({str(img.dtype).removeprefix('torch.')}); a real-valued image is "
                "expected: export its magnitude (or phase) first"
            )
        if img.is_floating_point():
            finite = torch.isfinite(img)
            if not bool(finite.all()):
                raise ImageLoadError(f"{path}: image contains {int((~finite).sum())} NaN/Inf values")
        if isinstance(img, MetaTensor):
            meta = img.meta
            meta[SOURCE_DTYPE_KEY] = str(img.dtype).removeprefix("torch.")
            name = (canonical_modality(modality) if modality else self.modality) or modality_from_meta(meta)
            if name is not None:
                meta[MODALITY_KEY] = name
        return img if self.dtype is None else convert_data_type(img, dtype=self.dtype)[0]


class LoadModalityd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`LoadModality`: replaces each path under ``keys`` with the loaded image.

    Args:
        keys: keys of the corresponding items to be transformed.
            See also: monai.transforms.MapTransform
        reader: see :py:class:`LoadModality`.
        ensure_channel_first: see :py:class:`LoadModality`.
        dtype: see :py:class:`LoadModality`.
        modality: one modality for all keys, or one per key (None entries use the DICOM header, if any).
        allow_missing_keys: don't raise exception if key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reader: ImageReader | None = None,
        ensure_channel_first: bool = True,
        dtype: DtypeLike | None = np.float32,
        modality: Sequence[str | None] | str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.modality = tuple(
            None if m is None else canonical_modality(m) for m in ensure_tuple_rep(modality, len(self.keys))
        )
        self.loader = LoadModality(reader=reader, ensure_channel_first=ensure_channel_first, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, PathLike]) -> dict[Hashable, torch.Tensor]:
        d: dict[Hashable, Any] = dict(data)
        for key, modality in self.key_iterator(d, self.modality):
            d[key] = self.loader(d[key], modality=modality)
        return d
