"""DenseFuse: Li & Wu, "DenseFuse: A Fusion Approach to Infrared and Visible Images", IEEE TIP 28(5), 2019.

An autoencoder trained to reconstruct single images (pixel MSE + lambda * (1 - SSIM)); at test time both
sources are encoded, their 64-channel feature maps fused by addition or the l1-norm rule, and the fused
features decoded. Every convolution is 3x3 with reflection padding (as in the authors' released code), ReLU
after all but the last.

- encoder: C1 (1 -> 16), dense block DC1..DC3 (16 channels each, each fed all earlier maps -> 64 channels)
- decoder: C2 (64 -> 64), C3 (64 -> 32), C4 (32 -> 16), C5 (16 -> 1, no activation)
"""

from __future__ import annotations

import torch
from monai.networks.blocks import DenseBlock as MonaiDenseBlock
from torch import nn

from mmif_monai.networks.blocks import reflect_conv, split_sources
from mmif_monai.networks.strategies import l1_norm_fusion

__all__ = ["DenseFuse", "FEATURE_FUSION_RULES"]

FEATURE_FUSION_RULES = ("addition", "l1")


def fuse_feature_maps(first: torch.Tensor, second: torch.Tensor, rule: str, radius: int = 1) -> torch.Tensor:
    """DenseFuse's two test-time rules: element-wise ``addition`` or the l1-norm activity weighting."""
    if rule == "addition":
        return first + second
    return l1_norm_fusion(first, second, radius)


class DenseFuse(nn.Module):
    """DenseFuse for 2D slice pairs.

    Args:
        fusion_rule: ``"addition"`` or ``"l1"`` (the paper's two strategies; l1-norm with a 3x3 block average).
        l1_radius: block radius r of the l1-norm rule's averaging window (the paper uses r = 1).

    ``forward(anatomical, functional)`` takes two (N, 1, H, W) tensors in [0, 1] and returns the fused
    (N, 1, H, W) clamped to [0, 1]; ``forward(x)`` with one (N, 2, H, W) tensor is the same.
    ``reconstruct(x)`` is the unclamped autoencoder pass it is trained with.
    """

    def __init__(self, fusion_rule: str = "l1", l1_radius: int = 1) -> None:
        super().__init__()
        if fusion_rule not in FEATURE_FUSION_RULES:
            raise ValueError(f"DenseFuse fusion_rule must be one of {FEATURE_FUSION_RULES}, got {fusion_rule!r}")
        self.fusion_rule = fusion_rule
        self.l1_radius = l1_radius
        self.conv1 = reflect_conv(1, 16)
        self.dense = MonaiDenseBlock([reflect_conv(16 + 16 * i, 16) for i in range(3)])
        self.decoder = nn.Sequential(
            reflect_conv(64, 64), reflect_conv(64, 32), reflect_conv(32, 16), reflect_conv(16, 1, act=None)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """64-channel features of one image batch (N, 1, H, W)."""
        return self.dense(self.conv1(x))

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Image (N, 1, H, W), unclamped, from 64-channel features."""
        return self.decoder(features)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The training pass: encode and decode one image batch."""
        return self.decode(self.encode(x))

    def forward(self, anatomical: torch.Tensor, functional: torch.Tensor | None = None) -> torch.Tensor:
        anatomical, functional = split_sources(anatomical, functional, "DenseFuse")
        batch = anatomical.shape[0]
        features = self.encode(torch.cat([anatomical, functional]))
        fused = fuse_feature_maps(features[:batch], features[batch:], self.fusion_rule, self.l1_radius)
        return self.decode(fused).clamp(0.0, 1.0)
