"""Feature-level fusion rules: DenseFuse's l1-norm activity weighting and the learnable fusion module (FA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmif_monai.networks.blocks import conv_bn_relu

__all__ = ["l1_activity", "l1_norm_weights", "l1_norm_fusion", "L1NormFusion", "LearnedFusion"]


def l1_activity(features: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """DenseFuse's activity map: channel-wise l1 norm, then block-averaged over a (2r+1)^2 window.

    Li & Wu, "DenseFuse: A Fusion Approach to Infrared and Visible Images", IEEE TIP 2019, Eq. 5-6.
    """
    activity = features.abs().sum(dim=1, keepdim=True)
    if radius > 0:
        activity = F.avg_pool2d(activity, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return activity


def l1_norm_weights(first: torch.Tensor, second: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Normalised l1 activity weights (N, 2, H, W) of two feature maps; equal weights where both are silent."""
    activity = torch.cat([l1_activity(first, radius), l1_activity(second, radius)], dim=1)
    total = activity.sum(dim=1, keepdim=True)
    # where neither source is active the rule is undefined; averaging keeps the map continuous
    return torch.where(total > 0, activity / total.clamp_min(1e-12), torch.full_like(activity, 0.5))


def l1_norm_fusion(first: torch.Tensor, second: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Fuse two (N, C, H, W) feature maps by their normalised l1 activity (DenseFuse's rule)."""
    weights = l1_norm_weights(first, second, radius)
    return weights[:, :1] * first + weights[:, 1:] * second


class L1NormFusion(nn.Module):
    """The l1-norm rule as a parameter-free module, interchangeable with :class:`LearnedFusion`."""

    def __init__(self, radius: int = 1) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return l1_norm_fusion(first, second, self.radius)


class LearnedFusion(nn.Module):
    """The paper's learnable fusion module (FA): per-pixel source weights predicted from both feature maps.

    The weights are ``softmax(log(l1 weights) + correction)``, where a small conv net predicts the correction
    from the concatenated features. With the correction at zero this is exactly the l1-norm rule, so an
    autoencoder-trained network behaves like DenseFuse's rule until the fusion-loss mode trains FA
    (docs/method.md explains the choice).
    """

    def __init__(self, channels: int, hidden_channels: int = 8, radius: int = 1) -> None:
        super().__init__()
        self.radius = radius
        self.correction = nn.Sequential(
            conv_bn_relu(2 * channels, hidden_channels, kernel_size=1),
            nn.Conv2d(hidden_channels, 2, 3, padding=1),
        )

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        prior = l1_norm_weights(first, second, self.radius).clamp_min(1e-6).log()
        weights = torch.softmax(prior + self.correction(torch.cat([first, second], dim=1)), dim=1)
        return weights[:, :1] * first + weights[:, 1:] * second
