"""A MONAI inferer that fuses colour or grey functional images with a luminance-only fusion network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from mmif_monai.fusion.pipeline import fuse_batch

__all__ = ["FusionInferer"]


class FusionInferer(Inferer):
    """Run a fusion network on (N, 1 + C, H, W) inputs: the grey anatomical image, then the functional one.

    C = 3 (pseudo-colour PET/SPECT) is fused through YIQ and gives colour output; C = 1 gives grey output
    (see :func:`mmif_monai.fusion.pipeline.fuse_batch`, which also explains ``keep_background``). The network
    sees luminance only, as in training.
    """

    def __init__(self, keep_background: bool = True) -> None:
        super().__init__()
        self.keep_background = keep_background

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        if inputs.dim() != 4 or inputs.shape[1] not in (2, 4):
            raise ValueError(
                f"expected (N, 2 or 4, H, W): anatomical + grey or RGB functional, got {tuple(inputs.shape)}"
            )
        # slicing channels of a batched MetaTensor trips over its per-item metadata: fuse the plain tensor and
        # give the result the input's metadata (source file names for the writer)
        if not isinstance(inputs, MetaTensor):
            return fuse_batch(network, inputs[:, :1], inputs[:, 1:], self.keep_background)
        images = inputs.as_tensor()
        fused = MetaTensor(fuse_batch(network, images[:, :1], images[:, 1:], self.keep_background))
        fused.copy_meta_from(inputs)
        return fused
