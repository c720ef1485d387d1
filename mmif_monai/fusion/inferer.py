"""A MONAI inferer that fuses colour or grey functional images with a luminance-only fusion network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from mmif_monai.fusion.pipeline import fuse_batch
from mmif_monai.networks.inference import InferenceNetwork, prepare_for_inference

__all__ = ["FusionInferer"]


class FusionInferer(Inferer):
    """Run a fusion network on (N, 1 + C, H, W) inputs: the grey anatomical image, then the functional one.

    C = 3 (pseudo-colour PET/SPECT) is fused through YIQ and gives colour output; C = 1 gives grey output
    (see :func:`mmif_monai.fusion.pipeline.fuse_batch`, which also explains ``keep_background``). The network
    sees luminance only, as in training.

    A network in eval mode runs in its inference form (:func:`~mmif_monai.networks.inference.prepare_for_inference`),
    made once and made again when its parameters or buffers change (a validation during training after more
    steps, a checkpoint loaded); one in training mode runs as it is, so that gradients reach it.
    """

    def __init__(self, keep_background: bool = True) -> None:
        super().__init__()
        self.keep_background = keep_background
        self._prepared: tuple[tuple[int, ...], InferenceNetwork] | None = None

    def _inference_form(self, network: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if not isinstance(network, nn.Module) or network.training or isinstance(network, InferenceNetwork):
            return network
        # in-place updates (optimiser steps, load_state_dict, batch-norm statistics) bump a tensor's version
        state = (id(network), *(t._version for t in (*network.parameters(), *network.buffers())))
        if self._prepared is None or self._prepared[0] != state:
            self._prepared = (state, prepare_for_inference(network))
        return self._prepared[1]

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        if inputs.dim() != 4 or inputs.shape[1] not in (2, 4):
            raise ValueError(
                f"expected (N, 2 or 4, H, W): anatomical + grey or RGB functional, got {tuple(inputs.shape)}"
            )
        network = self._inference_form(network)
        # slicing channels of a batched MetaTensor trips over its per-item metadata: fuse the plain tensor and
        # give the result the input's metadata (source file names for the writer)
        if not isinstance(inputs, MetaTensor):
            return fuse_batch(network, inputs[:, :1], inputs[:, 1:], self.keep_background)
        images = inputs.as_tensor()
        fused = MetaTensor(fuse_batch(network, images[:, :1], images[:, 1:], self.keep_background))
        fused.copy_meta_from(inputs)
        return fused
