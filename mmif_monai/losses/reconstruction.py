"""The paper's autoencoder training loss: pixel MSE + lambda * (1 - SSIM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn

__all__ = ["ReconstructionLoss"]


class ReconstructionLoss(nn.Module):
    """``MSE(pred, target) + ssim_weight * (1 - SSIM(pred, target))`` on images in [0, 1].

    The form is DenseFuse's (Li & Wu, IEEE TIP 2019), which MMIF-Net trains with; the SSIM term is MONAI's
    ``SSIMLoss`` (Gaussian 11x11 window, data range 1), which already returns 1 - SSIM.
    """

    def __init__(self, ssim_weight: float = 10.0, win_size: int = 11) -> None:
        super().__init__()
        if ssim_weight < 0:
            raise ValueError(f"ssim_weight must be >= 0, got {ssim_weight}")
        self.ssim_weight = ssim_weight
        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0, win_size=win_size)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = F.mse_loss(pred, target)
        if self.ssim_weight == 0:
            return mse
        return mse + self.ssim_weight * self.ssim(pred, target)
