"""The autoencoder training pass of the comparison methods trained without ground-truth fused images.

DenseFuse and NestFuse are autoencoders by design; IFCNN is trained on ground-truth fused images in its
paper, which this data set does not have, so it is trained here the same way (docs/comparison.md).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

__all__ = ["AutoencoderTask"]


class AutoencoderTask(nn.Module):
    """Wraps a network with ``reconstruct(image)`` so MONAI's ``SupervisedTrainer`` trains it unchanged:
    ``forward(image)`` encodes and decodes one (N, 1, H, W) batch; the label is the image itself."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(network, "reconstruct", None)):
            raise ValueError(f"{type(network).__name__} has no reconstruct(image) method to train as an autoencoder")
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return cast(Any, self.network).reconstruct(image)  # checked in __init__: the network has reconstruct
