"""Reading 2D slice images for fusion and writing results atomically."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import PydicomReader
from monai.utils import convert_to_dst_type
from PIL import Image
from pydicom.errors import InvalidDicomError

from mmif_monai.errors import MMIFWarning
from mmif_monai.io.outputs import atomic_output, check_output_path, check_outputs_spare_inputs
from mmif_monai.io.volumes import check_decodable
from mmif_monai.transforms import (
    SOURCE_DTYPE_KEY,
    LoadModality,
    ModalityNormalize,
    SliceReader,
    modality_from_meta,
    reader_for_path,
    shown_inverted,
)

__all__ = [
    "MAX_SLICE_PIXELS",
    "read_slice",
    "atomic_output",
    "write_image_atomic",
    "check_output_path",
    "check_outputs_spare_inputs",
    "check_not_constant",
    "NEARLY_EMPTY_SHARE",
    "warn_if_nearly_empty",
]

#: an image is nearly empty when at most this share of its pixels differ from its background (one pixel in a
#: thousand: 65 of a 256 x 256 slice); fused all the same, with a warning
NEARLY_EMPTY_SHARE = 1e-3

#: the largest slice accepted, in pixels: above any CT, MR, PET or SPECT slice matrix (512 to 1024 a side),
#: and already several GB of MMIF-Net feature maps at full resolution
MAX_SLICE_PIXELS = 2048 * 2048


@lru_cache(maxsize=1)
def _slice_loader() -> LoadModality:
    # one loader per process: building MONAI's LoadImage sets up every reader (and their warnings) each time
    return LoadModality()


def read_slice(path: str | Path) -> torch.Tensor:
    """A 2D slice as a float (C, H, W) tensor in [0, 1]: C = 1 for grey, 3 for colour; row-major whatever the
    format, so pixel ``[r, c]`` is row ``r``, column ``c`` of the stored image (a DICOM slice's ``Rows`` x
    ``Columns``) and a fused result lines up with its inputs.

    Intensities are scaled by what the file holds (the dtype :class:`LoadModality` recorded before its cast,
    and the modality in a DICOM header):

    - a grey DICOM slice whose header has a VOI LUT (WindowCenter/WindowWidth or a VOI LUT Sequence): as a viewer
      shows it, the modality rescale and the VOI LUT applied and the output range mapped to [0, 1];
    - 8-bit data: ``/ 255``, whatever the modality (display grey levels, already windowed);
    - a known modality (CT, MR, PT, NM): :class:`ModalityNormalize`'s rule (CT window, MR percentiles, SUV);
    - float data in [0, 1] and no modality: kept as it is (an image already normalised, e.g. our own exports);
    - anything else (16-bit or other integers, floats outside [0, 1], no modality): the 0.5/99.5 percentiles
      mapped to [0, 1], the rule for intensities without a physical unit. Dividing by the type's maximum
      would leave 12-bit data in a 16-bit file 16 times too dark, and a min-max stretch lets one outlier
      pixel black out the rest.

    A DICOM slice whose PhotometricInterpretation is ``MONOCHROME1`` (lowest value white) comes back inverted, as a
    viewer shows it, whichever rule scaled it.

    Raises:
        FileNotFoundError / ValueError naming the file: missing, unreadable, compressed in a way no installed
        decoder reads, not 2D, larger than :data:`MAX_SLICE_PIXELS`, not finite, or of a modality this scaling does
        not know (e.g. US).
    """
    reader = reader_for_path(path)
    header = _dicom_header(path) if isinstance(reader, PydicomReader) else None
    if header is not None:
        check_decodable([header], path)
    img = _slice_loader()(str(path))
    if img.dim() != 3 or img.shape[0] not in (1, 3, 4):
        raise ValueError(f"{path}: expected a 2D grey or RGB image, got shape {tuple(img.shape)}")
    if img.shape[1] * img.shape[2] > MAX_SLICE_PIXELS:
        raise ValueError(
            f"{path}: image of {img.shape[1]}x{img.shape[2]} pixels is larger than the {MAX_SLICE_PIXELS} "
            "pixels accepted; downsample it first"
        )
    if not isinstance(reader, SliceReader):
        # the medical readers index (x, y); a slice is handled and written as an image, row-major like PNG
        img = img.transpose(1, 2)
    img = img[:3]  # drop an alpha channel
    if img.shape[0] == 3 and bool((img[0] == img[1]).all() and (img[1] == img[2]).all()):
        img = img[:1]  # a grey image stored as RGB
    if header is not None and img.shape[0] == 1:
        shown = _through_voi_lut(img, header)
        if shown is not None:
            return shown
    modality = modality_from_meta(img.meta)
    if modality is None:
        if img.meta[SOURCE_DTYPE_KEY].startswith("float") and img.min() >= 0 and img.max() <= 1:
            return img
        modality = "MR"  # no physical unit known: MR's percentile rule
    try:
        return ModalityNormalize()(img, modality=modality)
    except ValueError as error:  # an unknown modality name; the file is what the user needs to hear about
        raise ValueError(f"{path}: {error}") from error


def _dicom_header(path: str | Path) -> pydicom.Dataset | None:
    """A DICOM file's header without its pixel data, or None when it does not parse (the reader then says why)."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None


def _through_voi_lut(img: torch.Tensor, header: pydicom.Dataset) -> torch.Tensor | None:
    """A grey DICOM slice (1, H, W), as the reader gives it (the modality rescale applied), in [0, 1] as a viewer
    shows it: through the Modality LUT Sequence the reader does not apply, then the VOI LUT (a VOI LUT Sequence, or
    the first window of WindowCenter/WindowWidth), ``MONOCHROME1`` inverted. None when the header has no VOI LUT."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = img[0].numpy().astype(np.float64)
    if header.get("ModalityLUTSequence") and "RescaleSlope" not in header:
        values = apply_modality_lut(np.rint(values).astype(np.int64), header).astype(np.float64)
    if header.get("VOILUTSequence"):
        bits = int(header.VOILUTSequence[0].LUTDescriptor[2])
        shown = apply_voi(np.rint(values).astype(np.int64), header) / (2.0**bits - 1)
    elif header.get("WindowCenter") is not None and header.get("WindowWidth") is not None:
        # a window maps onto its output range: what it gives values below and above it
        low, high = apply_windowing(np.array([-np.inf, np.inf]), header)
        shown = (apply_windowing(values, header) - low) / (high - low)
    else:
        return None
    if shown_inverted(getattr(img, "meta", {})):
        shown = 1.0 - shown
    return convert_to_dst_type(shown[None], dst=img, dtype=torch.float32)[0]


def check_not_constant(image: torch.Tensor, name: str | Path) -> None:
    """Refuse a constant (C, H, W) image or (C, X, Y, Z) volume, all black or all one value: fusing it gives the
    other source back and would hide an empty or failed export.

    Raises:
        ValueError: naming ``name``.
    """
    if bool(image.amax() == image.amin()):
        what, element = ("volume", "voxel") if image.dim() == 4 else ("image", "pixel")
        raise ValueError(f"{name}: the {what} is constant (every {element} the same value); nothing to fuse")


def warn_if_nearly_empty(image: torch.Tensor, name: str | Path) -> None:
    """Warn (:class:`~mmif_monai.errors.MMIFWarning`) when at most :data:`NEARLY_EMPTY_SHARE` of the pixels (voxels)
    of a normalised (C, H, W) image or (C, X, Y, Z) volume differ from its background, its lowest or highest value:
    not constant, so not refused, but most likely an empty or failed export, or a window that shows nothing."""
    pixels = image.reshape(image.shape[0], -1)
    background = max(int((pixels == pixels.amin()).all(0).sum()), int((pixels == pixels.amax()).all(0).sum()))
    shown = pixels.shape[1] - background
    if shown <= NEARLY_EMPTY_SHARE * pixels.shape[1]:
        what, element = ("volume", "voxel") if image.dim() == 4 else ("image", "pixel")
        warnings.warn(
            f"{name}: nearly empty {what}: only {shown} of {pixels.shape[1]} {element}s differ from its background; "
            f"check that it is the {what} meant",
            MMIFWarning,
            stacklevel=2,
        )


def write_image_atomic(image: torch.Tensor, path: str | Path, overwrite: bool = True) -> None:
    """Write a (C, H, W) image in [0, 1] as an 8-bit PNG, atomically; without ``overwrite`` only if ``path`` does
    not exist by then (:func:`~mmif_monai.io.outputs.atomic_output`: FileExistsError otherwise)."""
    array = (image.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    pil = Image.fromarray(array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1))
    with atomic_output(path, overwrite) as tmp:
        pil.save(tmp, format="PNG")
