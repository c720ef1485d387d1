"""FusionDN: Xu, Ma, Le, Jiang & Guo, "FusionDN: A Unified Densely Connected Network for Image Fusion",
AAAI 2020.

A single densely connected network maps the concatenated sources directly to the fused image and is trained
without ground truth by an unsupervised loss whose per-source weights come from measuring the information
in each source (``mmif_monai.losses.FusionDNLoss``). Layers as the authors' release defines them (every conv
3x3, reflection-padded):

- encoder: conv 2 -> 48 + BN + ReLU; four dense units (conv -> 48 + BN + ReLU, conv 48 -> 48 + BN + ReLU),
  each fed the concatenation of all earlier maps -> 240 channels
- decoder: conv 240 -> 240 + ReLU, 240 -> 128 + BN + ReLU, 128 -> 64 + BN + ReLU, 64 -> 1, then
  tanh / 2 + 0.5 so the output lies in [0, 1]
"""

from __future__ import annotations

import torch
from monai.networks.blocks import DenseBlock as MonaiDenseBlock
from torch import nn

from mmif_monai.networks.blocks import reflect_conv, split_sources

__all__ = ["FusionDN"]


class FusionDN(nn.Module):
    """FusionDN for 2D slice pairs: ``forward(anatomical, functional)`` (or one (N, 2, H, W) tensor) returns
    the fused (N, 1, H, W) in [0, 1]; the channel order of its input is (anatomical, functional).

    Args:
        growth: channels of the first conv and of every dense unit (48 in the release).
        dense_units: number of dense units (4 in the release).
    """

    def __init__(self, growth: int = 48, dense_units: int = 4) -> None:
        super().__init__()
        self.conv1 = reflect_conv(2, growth, norm="batch")
        self.dense = MonaiDenseBlock(
            [
                nn.Sequential(
                    reflect_conv(growth * (i + 1), growth, norm="batch"), reflect_conv(growth, growth, norm="batch")
                )
                for i in range(dense_units)
            ]
        )
        width = growth * (dense_units + 1)
        self.decoder = nn.Sequential(
            reflect_conv(width, width),
            reflect_conv(width, 128, norm="batch"),
            reflect_conv(128, 64, norm="batch"),
            reflect_conv(64, 1, act=None),
        )

    def forward(self, anatomical: torch.Tensor, functional: torch.Tensor | None = None) -> torch.Tensor:
        anatomical, functional = split_sources(anatomical, functional, "FusionDN")
        features = self.dense(self.conv1(torch.cat([anatomical, functional], dim=1)))
        return torch.tanh(self.decoder(features)) / 2 + 0.5
