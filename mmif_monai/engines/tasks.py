"""Training tasks: modules that wrap MMIF-Net so MONAI's ``SupervisedTrainer`` trains it unchanged.

Each task is an ``nn.Module`` whose ``forward`` is the training pass, so DistributedDataParallel can wrap it
(DDP synchronises gradients only through ``forward``) and the trainer's default inferer calls it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmif_monai.networks.mmif_net import MMIFNet

__all__ = ["ReconstructionTask", "FusionTask"]


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


class FusionTask(nn.Module):
    """End-to-end fusion: the network fuses the two sources stacked as channels (N, 2, H, W).

    Pair it with :class:`mmif_monai.losses.FusionLoss`, whose target is the sources themselves. ``trainable``
    names the network's submodules that learn (e.g. ``("fusions",)``: MMIF-Net's learned fusion modules, the
    paper's FA); the rest is frozen and kept in eval mode, so its batch-norm statistics stay those of the
    reconstruction training. ``None`` trains everything.
    """

    def __init__(self, network: nn.Module, trainable: Sequence[str] | None = None) -> None:
        super().__init__()
        self.network = network
        self.trainable = None if trainable is None else tuple(trainable)
        if self.trainable is not None:
            missing = [name for name in self.trainable if not hasattr(network, name)]
            if missing:
                raise ValueError(f"{type(network).__name__} has no submodule(s) {missing}")
            network.requires_grad_(False)
            for name in self.trainable:
                getattr(network, name).requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> FusionTask:
        super().train(mode)
        if mode and self.trainable is not None:
            self.network.eval()
            for name in self.trainable:
                getattr(self.network, name).train()
        return self

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        return self.network(sources)
