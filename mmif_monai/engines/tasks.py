"""Training tasks: modules that wrap MMIF-Net so MONAI's ``SupervisedTrainer`` trains it unchanged.

Each task is an ``nn.Module`` whose ``forward`` is the training pass, so DistributedDataParallel can wrap it
(DDP synchronises gradients only through ``forward``) and the trainer's default inferer calls it.
"""

from __future__ import annotations

import torch
from torch import nn

from mmif_monai.networks.mmif_net import MMIFNet

__all__ = ["ReconstructionTask"]


class ReconstructionTask(nn.Module):
    """The paper's autoencoder task on the path inference uses.

    With ``network.decompose`` the image is split into its LatLRR low-rank and salient parts, both are encoded
    and decoded in one batch, and their reconstructions summed - exactly what fusing an image with itself
    does at inference (the l1 rule and the initial FA return equal feature maps unchanged).
    """

    def __init__(self, network: MMIFNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.network.decompose:
            return self.network.reconstruct(image)
        low_rank, salient = self.network.decomposition(image)
        parts = self.network.reconstruct(torch.cat([low_rank, salient]))
        return parts[: image.shape[0]] + parts[image.shape[0] :]
