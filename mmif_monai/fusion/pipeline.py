"""Fusing image batches with a fusion network, colour handled through YIQ."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmif_monai.fusion.colour import LuminanceLimit
from mmif_monai.transforms.color import merge_luminance, rgb_to_yiq, split_luminance, yiq_to_rgb

__all__ = ["FuseFn", "fuse_batch", "source_support"]

#: anything that fuses (N, 1, H, W) anatomical and luminance batches in [0, 1]: MMIF-Net or a classical rule
FuseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def source_support(anatomical: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) mask, 1 where either source is non-zero (any channel of a colour functional image)."""
    return ((anatomical > 0) | (functional > 0).any(dim=1, keepdim=True)).to(anatomical.dtype)


@torch.no_grad()
def fuse_batch(
    fuse: FuseFn,
    anatomical: torch.Tensor,
    functional: torch.Tensor,
    keep_background: bool = True,
    luminance_limit: LuminanceLimit | None = None,
) -> torch.Tensor:
    """Fuse a grey anatomical batch (N, 1, H, W) with a grey or colour functional batch (N, 1 | 3, H, W).

    Both in [0, 1]. A colour (pseudo-colour PET/SPECT) functional image is converted to YIQ; its luminance Y
    is fused with the anatomical image and its chrominance I, Q is kept, so the result is colour (N, 3, H, W).
    A grey pair gives a grey result (N, 1, H, W). Output in [0, 1].

    With ``keep_background`` (the default) pixels that are exactly zero in both sources stay zero: a fusion
    rule must not put signal where neither source has any. Convolutional rules otherwise leave a faint halo
    around the anatomy and a frame along the image border (docs/method.md, "Background").

    A ``luminance_limit`` (:class:`~mmif_monai.fusion.colour.LuminanceLimit`, e.g. ``COLOUR_FIDELITY``) bounds how
    far the fused luminance of a coloured functional pixel may move from the functional luminance, so that its
    colour stays on its step of the colour scale (docs/colour.md). ``None`` (the default) fuses Y unbounded.
    """
    if anatomical.dim() != 4 or anatomical.shape[1] != 1:
        raise ValueError(f"anatomical batch must be (N, 1, H, W), got {tuple(anatomical.shape)}")
    if functional.dim() != 4 or functional.shape[1] not in (1, 3):
        raise ValueError(f"functional batch must be (N, 1 or 3, H, W), got {tuple(functional.shape)}")
    if anatomical.shape[-2:] != functional.shape[-2:] or anatomical.shape[0] != functional.shape[0]:
        raise ValueError(
            f"anatomical {tuple(anatomical.shape)} and functional {tuple(functional.shape)} differ in size"
        )
    if functional.shape[1] == 1:
        fused = fuse(anatomical, functional).clamp(0.0, 1.0)
    else:
        luminance, chrominance = split_luminance(rgb_to_yiq(functional, channel_dim=1), channel_dim=1)
        fused_luminance = fuse(anatomical, luminance)
        if luminance_limit is not None:
            fused_luminance = luminance_limit(fused_luminance, luminance, chrominance)
        fused = yiq_to_rgb(merge_luminance(fused_luminance, chrominance, channel_dim=1), channel_dim=1).clamp(0.0, 1.0)
    return fused * source_support(anatomical, functional) if keep_background else fused
