"""The fusion literature's preprocessing before scoring: 8-bit grey values, luminance of colour images, and the
min-max stretch of the fused image.

Evaluation code in the literature (e.g. the CDDFuse evaluation, Zhao et al., CVPR 2023) stretches the network
output to 0..255, saves it as an 8-bit image and reads every image back as 8-bit grey, colour images through
their BT.601 luma. The stretch is applied to the fused image only; the sources are scored as stored. See
``docs/metrics.md``.
"""

from __future__ import annotations

import torch
from monai.config import NdarrayTensor
from monai.utils import convert_to_dst_type, convert_to_tensor

from mmif_monai.transforms.color import YIQ_FROM_RGB

__all__ = ["LUMA_WEIGHTS", "to_uint8_grey", "stretch_to_uint8_range"]

#: Y of YIQ / ITU-R BT.601 luma (Y = 0.299 R + 0.587 G + 0.114 B): the row of the YIQ matrix the fusion uses,
#: so colour images are scored on exactly the luminance that was fused.
LUMA_WEIGHTS: tuple[float, ...] = tuple(float(w) for w in YIQ_FROM_RGB[0])


def _luminance(img: torch.Tensor) -> torch.Tensor:
    """(H, W) grey image of an (H, W), (H, W, 1|3) or (1|3, H, W) image."""
    if img.ndim == 2:
        return img
    if img.ndim == 3:
        if img.shape[-1] == 3:
            return img @ img.new_tensor(LUMA_WEIGHTS)
        if img.shape[0] == 3:
            return torch.einsum("chw,c->hw", img, img.new_tensor(LUMA_WEIGHTS))
        if img.shape[-1] == 1:
            return img[..., 0]
        if img.shape[0] == 1:
            return img[0]
    raise ValueError(f"expected a grey (H, W) or RGB (H, W, 3) / (3, H, W) image, got shape {tuple(img.shape)}")


def to_uint8_grey(img: NdarrayTensor) -> NdarrayTensor:
    """8-bit grey values of an image of 0..255 values, as the literature scores it.

    Colour images (RGB, channel-last ``(H, W, 3)`` or channel-first ``(3, H, W)``; channel-last wins for a
    3x3x3 array) become their BT.601 luma; the result is rounded (half to even) and clipped to 0..255.

    Returns:
        an ``(H, W)`` uint8 array or tensor, the type of ``img``.
    """
    grey = _luminance(convert_to_tensor(img, dtype=torch.float64))
    out, *_ = convert_to_dst_type(grey.round().clamp(0, 255).to(torch.uint8), img, dtype=torch.uint8)
    return out


def stretch_to_uint8_range(img: NdarrayTensor) -> NdarrayTensor:
    """Min-max stretch each 2D image (the last two dims) to 0..255 and round, the fused-image protocol.

    A constant image has no range to stretch and maps to 0.

    Returns:
        float64 values of the type of ``img`` and its shape, for example ``(N, 1, H, W)`` for a batch.
    """
    x = convert_to_tensor(img, dtype=torch.float64)
    low = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - low
    stretched = (x - low) / torch.where(span > 0, span, 1.0) * 255.0
    out, *_ = convert_to_dst_type(stretched.round(), img, dtype=torch.float64)
    return out
