"""An end-to-end fusion loss that needs no ground-truth fused image: it pulls the fused image towards the
brighter source in intensity and the sharper source in gradient, keeps it structurally similar to both, and
(optionally) rewards carrying each source's own contrast, as the SCD metric measures it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn

__all__ = ["gradient_magnitude", "difference_correlation", "FusionLoss"]

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def gradient_magnitude(image: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude |gx| + |gy| of a (N, C, H, W) batch, per channel, replicate-padded.

    The l1 form (not the Euclidean norm) keeps the loss differentiable where the gradient is zero.
    """
    channels = image.shape[1]
    kernel = torch.stack([_SOBEL_X, _SOBEL_X.T]).to(image).unsqueeze(1).repeat(channels, 1, 1, 1)
    gradients = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
    return gradients.abs().reshape(image.shape[0], channels, 2, *image.shape[-2:]).sum(dim=2)


def difference_correlation(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per image ``r(f - b, a) + r(f - a, b)`` of (N, 1, H, W) batches: the SCD metric (Aslantas & Bendes 2015),
    differentiable.

    Unlike :func:`mmif_monai.metrics.batched.sum_of_correlations_of_differences` (float64, NaN on a constant
    image) it adds ``eps`` to each variance product, so a training crop of flat background gives 0, not NaN.
    """

    def correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc, yc = x - x.mean(dim=1, keepdim=True), y - y.mean(dim=1, keepdim=True)
        return (xc * yc).mean(dim=1) / torch.sqrt(xc.square().mean(dim=1) * yc.square().mean(dim=1) + eps)

    f, a, b = fused.flatten(1), a.flatten(1), b.flatten(1)
    return correlation(f - b, a) + correlation(f - a, b)


class FusionLoss(nn.Module):
    """``w_i * L1(f, max(a, b)) + w_g * L1(|grad f|, max(|grad a|, |grad b|)) + w_s * mean_k (1 - SSIM(f, s_k))
    + w_c * (1 - SCD(f, a, b) / 2)``.

    ``forward(fused, sources)`` takes the fused (N, 1, H, W) batch and the sources stacked as channels
    (N, 2, H, W), all in [0, 1]. The max-intensity and max-gradient targets are the ones of the unsupervised
    medical fusion literature (e.g. Zhang et al., "SDNet", IJCV 2021; Tang et al., "MATR", IEEE TIP 2022):
    a fused image should keep the bright structures of either source (bone from CT, uptake from PET) and the
    sharper edges of either. The SSIM term stops the intensity term from drifting away from either source.
    The correlation term (:func:`difference_correlation`, only with two sources; 0 by default) asks that what the
    fused image adds to one source correlates with the other source: a fusion that averages away a source's
    contrast scores low on it, one that keeps both scores high.
    """

    def __init__(
        self,
        intensity_weight: float = 1.0,
        gradient_weight: float = 1.0,
        ssim_weight: float = 1.0,
        correlation_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if min(intensity_weight, gradient_weight, ssim_weight, correlation_weight) < 0:
            raise ValueError("fusion loss weights must be >= 0")
        self.intensity_weight, self.gradient_weight, self.ssim_weight = intensity_weight, gradient_weight, ssim_weight
        self.correlation_weight = correlation_weight
        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0)

    def forward(self, fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        if fused.shape[1] != 1 or sources.shape[1] < 2 or fused.shape[-2:] != sources.shape[-2:]:
            raise ValueError(
                "expected fused (N, 1, H, W) and sources (N, >=2, H, W), "
                f"got {tuple(fused.shape)}, {tuple(sources.shape)}"
            )
        intensity = F.l1_loss(fused, sources.amax(dim=1, keepdim=True))
        gradient = F.l1_loss(gradient_magnitude(fused), gradient_magnitude(sources).amax(dim=1, keepdim=True))
        similarity = torch.stack([self.ssim(fused, sources[:, k : k + 1]) for k in range(sources.shape[1])]).mean()
        loss = self.intensity_weight * intensity + self.gradient_weight * gradient + self.ssim_weight * similarity
        if self.correlation_weight:
            if sources.shape[1] != 2:
                raise ValueError(f"the correlation term needs two sources, got {sources.shape[1]}")
            scd = difference_correlation(fused, sources[:, :1], sources[:, 1:])
            loss = loss + self.correlation_weight * (1 - scd / 2).mean()
        return loss
