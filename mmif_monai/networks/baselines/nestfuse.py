"""NestFuse: Li, Wu & Durrani, "NestFuse: An Infrared and Visible Image Fusion Architecture Based on Nest
Connection and Spatial/Channel Attention Models", IEEE TIM 69(12), 2020.

An autoencoder (pixel + lambda * SSIM loss, lambda = 100) with a four-level encoder and a UNet++-style nested
decoder; at test time the encoder features of both sources are fused at every level by the average of a
spatial-attention and a channel-attention rule, and the nested decoder reconstructs from the fused features.

- every block is "light": a 3x3 conv to half its input channels, then a 1x1 conv to its output channels,
  each reflection-padded and followed by ReLU (as in the authors' release)
- encoder: 1x1 conv 1 -> 16, blocks to (64, 112, 160, 208) channels with 2x2 max-pooling between levels
- decoder nodes x(i, j) = block(cat(x(i, 0..j-1), up(x(i+1, j-1)))), nearest upsampling; output 1x1 conv
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmif_monai.networks.blocks import reflect_conv, split_sources

__all__ = ["NestFuse", "nestfuse_attention_fusion"]


def nestfuse_attention_fusion(first: torch.Tensor, second: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """NestFuse's fusion rule: the mean of its spatial- and channel-attention fusions of two feature maps.

    spatial: per-pixel weights = softmax over the sources of the channel-mean activity (the paper's l1-norm
    activity, scaled by 1/C as the release computes it); channel: per-channel weights = each source's global
    average over the map, normalised to sum to one.
    """
    activity = torch.cat([first.mean(dim=1, keepdim=True), second.mean(dim=1, keepdim=True)], dim=1)
    spatial = torch.softmax(activity, dim=1)
    spatial_fused = spatial[:, :1] * first + spatial[:, 1:] * second
    pooled_first, pooled_second = first.mean(dim=(2, 3), keepdim=True), second.mean(dim=(2, 3), keepdim=True)
    total = pooled_first + pooled_second + eps
    channel_fused = (pooled_first / total) * first + (pooled_second / total) * second
    return (spatial_fused + channel_fused) / 2


def _light_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(reflect_conv(in_channels, in_channels // 2), reflect_conv(in_channels // 2, out_channels, 1))


class NestFuse(nn.Module):
    """NestFuse for 2D slice pairs.

    Args:
        features: channels of the four encoder levels (the paper's 64, 112, 160, 208).

    ``forward(anatomical, functional)`` (or one (N, 2, H, W) tensor) returns the fused (N, 1, H, W) in [0, 1];
    ``reconstruct(x)`` is the unclamped autoencoder pass it is trained with.
    """

    def __init__(self, features: Sequence[int] = (64, 112, 160, 208)) -> None:
        super().__init__()
        if len(features) != 4:
            raise ValueError(f"NestFuse needs 4 encoder channel counts, got {features}")
        f = list(features)
        self.stem = reflect_conv(1, 16, kernel_size=1)
        self.encoder = nn.ModuleList(_light_block(c_in, c_out) for c_in, c_out in zip([16, *f[:3]], f))
        # node (level i, column j) sees j earlier nodes of its level and the upsampled node (i + 1, j - 1)
        self.nest = nn.ModuleDict(
            {f"{i}_{j}": _light_block(f[i] * j + f[i + 1], f[i]) for j in range(1, 4) for i in range(4 - j)}
        )
        self.output = reflect_conv(f[0], 1, kernel_size=1, act=None)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of one image batch (N, 1, H, W) at the four levels, finest first."""
        feats = [self.encoder[0](self.stem(x))]
        for block in self.encoder[1:]:
            feats.append(block(F.max_pool2d(feats[-1], 2)))
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Image (N, 1, H, W), unclamped, from (fused) features at the four levels."""
        nodes = [[feat] for feat in feats]
        for j in range(1, 4):
            for i in range(4 - j):
                below = F.interpolate(nodes[i + 1][j - 1], size=nodes[i][0].shape[-2:], mode="nearest")
                nodes[i].append(self.nest[f"{i}_{j}"](torch.cat([*nodes[i], below], dim=1)))
        return self.output(nodes[0][3])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def forward(self, anatomical: torch.Tensor, functional: torch.Tensor | None = None) -> torch.Tensor:
        anatomical, functional = split_sources(anatomical, functional, "NestFuse")
        batch = anatomical.shape[0]
        feats = self.encode(torch.cat([anatomical, functional]))
        fused = [nestfuse_attention_fusion(feat[:batch], feat[batch:]) for feat in feats]
        return self.decode(fused).clamp(0.0, 1.0)
