"""RGB <-> YIQ colour conversion for pseudo-colour functional images (PET / SPECT).

Fusion works on one luminance channel: a colour functional image is converted to YIQ, its Y channel is fused
with the anatomical image, and the fused Y is recombined with the original I and Q chrominance before going
back to RGB::

    yiq = RGBToYIQ()(rgb)                      # (3, H, W)
    y, iq = split_luminance(yiq)               # (1, H, W), (2, H, W)
    fused_rgb = YIQToRGB()(merge_luminance(fused_y, iq)).clamp(0, 1)

Matrix source: the YIQ encoding of the NTSC colour television standard (NTSC, adopted by the FCC in 1953),
with the three-significant-figure coefficients used by MATLAB's ``rgb2ntsc``
(https://www.mathworks.com/help/images/ref/rgb2ntsc.html) and GNU Octave's ``rgb2ntsc``; the FCC rule text itself
rounds them to two digits (0.30 / 0.59 / 0.11 for Y), as Octave's documentation notes::

    Y = 0.299 R + 0.587 G + 0.114 B
    I = 0.596 R - 0.274 G - 0.322 B
    Q = 0.211 R - 0.523 G + 0.312 B

The YIQ -> RGB matrix is the exact (float64) matrix inverse of this one, not the rounded coefficients often
quoted with it, so RGB -> YIQ -> RGB returns the input to floating-point precision.

Each row of I and Q sums to zero, so grey pixels (R = G = B) have I = Q = 0; the Y row sums to one. For RGB in
[0, 1]: Y is in [0, 1], I in [-0.596, 0.596] and Q in [-0.523, 0.523].
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import cast

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.data.meta_tensor import MetaTensor
from monai.transforms.inverse import InvertibleTransform
from monai.transforms.transform import MapTransform, Transform
from monai.transforms.utils_pytorch_numpy_unification import concatenate
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = [
    "YIQ_FROM_RGB",
    "RGB_FROM_YIQ",
    "rgb_to_yiq",
    "yiq_to_rgb",
    "split_luminance",
    "merge_luminance",
    "RGBToYIQ",
    "YIQToRGB",
    "RGBToYIQd",
    "YIQToRGBd",
    "ToLuminance",
    "ToLuminanced",
]

#: NTSC (FCC 1953) RGB -> YIQ matrix; rows give Y, I, Q from (R, G, B).
YIQ_FROM_RGB: np.ndarray = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float64
)
#: Exact inverse of ``YIQ_FROM_RGB`` (computed, not the rounded published coefficients).
RGB_FROM_YIQ: np.ndarray = np.linalg.inv(YIQ_FROM_RGB)
YIQ_FROM_RGB.setflags(write=False)
RGB_FROM_YIQ.setflags(write=False)


def _apply_colour_matrix(img: NdarrayOrTensor, matrix: np.ndarray, channel_dim: int) -> NdarrayOrTensor:
    """Multiply every pixel's 3-vector along ``channel_dim`` by ``matrix``; keeps MetaTensor metadata."""
    img_t = convert_to_tensor(img, track_meta=get_track_meta())
    if img_t.shape[channel_dim] != 3:
        raise ValueError(f"expected 3 colour channels at dim {channel_dim}, got image of shape {tuple(img_t.shape)}")
    # integer images (e.g. uint8 RGB) are converted in float32: YIQ has negative, fractional values
    dtype = img_t.dtype if img_t.is_floating_point() else torch.float32
    data = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
    m = torch.tensor(matrix.tolist(), dtype=dtype, device=data.device)  # copy: the constants are read-only
    out = torch.movedim(torch.tensordot(m, torch.movedim(data.to(dtype), channel_dim, 0), dims=1), 0, channel_dim)
    return convert_to_dst_type(out, dst=img_t, dtype=dtype)[0]


def rgb_to_yiq(img: NdarrayOrTensor, channel_dim: int = 0) -> NdarrayOrTensor:
    """Convert RGB (expected in [0, 1]) to NTSC YIQ along ``channel_dim`` (0 for one image, 1 for a batch)."""
    return _apply_colour_matrix(img, YIQ_FROM_RGB, channel_dim)


def yiq_to_rgb(img: NdarrayOrTensor, channel_dim: int = 0) -> NdarrayOrTensor:
    """Convert NTSC YIQ to RGB along ``channel_dim``.

    Nothing is clamped: a YIQ triple that is not the image of an RGB colour in [0, 1] (e.g. a fused Y combined
    with chrominance it was not computed from) gives RGB values outside [0, 1]; the caller clips before display
    or saving, so that the conversion itself stays an exact inverse of :func:`rgb_to_yiq`.
    """
    return _apply_colour_matrix(img, RGB_FROM_YIQ, channel_dim)


def split_luminance(yiq: NdarrayOrTensor, channel_dim: int = 0) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
    """Split a YIQ image into its luminance ``Y`` (1 channel) and chrominance ``IQ`` (2 channels).

    The channel dimension is kept (``(1, H, W)`` and ``(2, H, W)`` for a ``(3, H, W)`` input) so both parts remain
    valid channel-first images.
    """
    if yiq.shape[channel_dim] != 3:
        raise ValueError(f"expected 3 YIQ channels at dim {channel_dim}, got shape {tuple(yiq.shape)}")
    index: list[slice] = [slice(None)] * yiq.ndim
    index[channel_dim] = slice(0, 1)
    y = yiq[tuple(index)]
    index[channel_dim] = slice(1, 3)
    return y, yiq[tuple(index)]


def merge_luminance(y: NdarrayOrTensor, iq: NdarrayOrTensor, channel_dim: int = 0) -> NdarrayOrTensor:
    """Inverse of :func:`split_luminance`: concatenate a 1-channel ``Y`` and 2-channel ``IQ`` into YIQ.

    ``y`` and ``iq`` must be the same array type (both numpy or both torch) with equal spatial shapes.
    """
    if y.shape[channel_dim] != 1 or iq.shape[channel_dim] != 2:
        raise ValueError(
            f"expected 1 luminance and 2 chrominance channels at dim {channel_dim}, "
            f"got shapes {tuple(y.shape)} and {tuple(iq.shape)}"
        )
    return concatenate([y, iq], axis=channel_dim)


class RGBToYIQ(InvertibleTransform):
    """
    Convert a channel-first RGB image ``(3, spatial...)`` with values in [0, 1] to NTSC YIQ.

    Output ranges: Y in [0, 1], I in [-0.596, 0.596], Q in [-0.523, 0.523]. Integer input is converted in
    float32. ``inverse`` applies :class:`YIQToRGB` (unclamped, see :func:`yiq_to_rgb`).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        out = cast(torch.Tensor, rgb_to_yiq(img))  # a tensor for any input (_apply_colour_matrix)
        self.push_transform(out)
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        self.pop_transform(data)
        return cast(torch.Tensor, yiq_to_rgb(data))


class YIQToRGB(Transform):
    """
    Convert a channel-first NTSC YIQ image ``(3, spatial...)`` to RGB with the exact inverse matrix.

    The result is not clamped to [0, 1]; clip it (e.g. ``out.clamp(0, 1)``) where a displayable image is needed.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        return cast(torch.Tensor, yiq_to_rgb(img))


class _PerKeyd(MapTransform):
    """Applies ``self.converter`` (an array transform set by the subclass) to every selected key."""

    converter: Transform

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class RGBToYIQd(_PerKeyd, InvertibleTransform):
    """
    Dictionary-based wrapper of :py:class:`RGBToYIQ`.

    Args:
        keys: keys of the corresponding items to be transformed.
            See also: monai.transforms.MapTransform
        allow_missing_keys: don't raise exception if key is missing.
    """

    backend = RGBToYIQ.backend
    converter: RGBToYIQ

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = RGBToYIQ()

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter.inverse(d[key])
        return d


class YIQToRGBd(_PerKeyd):
    """
    Dictionary-based wrapper of :py:class:`YIQToRGB`.

    Args:
        keys: keys of the corresponding items to be transformed.
            See also: monai.transforms.MapTransform
        allow_missing_keys: don't raise exception if key is missing.
    """

    backend = YIQToRGB.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = YIQToRGB()


class ToLuminance(Transform):
    """
    Reduce a channel-first image to its luminance ``(1, spatial...)``: Y of YIQ for 3-channel (RGB) input,
    unchanged for 1-channel (grey) input. Metadata (e.g. the source dtype that normalisation reads) is kept.

    This is what a fusion network sees of a pseudo-colour PET/SPECT slice, and what the metrics score.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.shape[0] == 1:
            return img
        if img.shape[0] != 3:
            raise ValueError(f"expected a grey (1) or RGB (3) channel-first image, got {img.shape[0]} channels")
        luminance, _ = split_luminance(rgb_to_yiq(img))
        out, *_ = convert_to_dst_type(luminance, img)
        if isinstance(img, MetaTensor) and get_track_meta():
            out = MetaTensor(out, meta=img.meta, applied_operations=img.applied_operations)
        return out


class ToLuminanced(_PerKeyd):
    """
    Dictionary-based wrapper of :py:class:`ToLuminance`.

    Args:
        keys: keys of the corresponding items to be transformed.
            See also: monai.transforms.MapTransform
        allow_missing_keys: don't raise exception if key is missing.
    """

    backend = ToLuminance.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToLuminance()
