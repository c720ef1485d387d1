"""The training losses of the comparison methods that learn fusion without a ground-truth fused image.

DenseFuse and NestFuse train with the autoencoder loss ``ReconstructionLoss`` (pixel + lambda * SSIM); IFCNN,
trained here as an autoencoder, with its pixel MSE. FusionDN and FusionGAN fuse end to end; their losses
follow the authors' releases (docs/comparison.md says where the terms differ and why):

- :class:`FusionDNLoss` (Xu et al., AAAI 2020): per-source weights from the sources' information, SSIM and
  Laplacian-gradient terms towards each source.
- :class:`FusionGANLoss` / :class:`FusionGANDiscriminatorLoss` (Ma et al., Information Fusion 2019):
  least-squares adversarial terms with soft random labels, and a content term keeping one source's
  intensities and the other's Laplacian gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn

from mmif_monai.metrics.batched import entropy

__all__ = ["laplacian", "source_information_weights", "FusionDNLoss", "FusionGANLoss", "FusionGANDiscriminatorLoss"]

_LAPLACIAN_KERNELS = {
    4: [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
    8: [[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]],
}


def laplacian(image: torch.Tensor, neighbours: int = 4) -> torch.Tensor:
    """Discrete Laplacian of a (N, 1, H, W) batch over 4 or 8 neighbours, zero-padded to the same size.

    Zero padding ('SAME' in the TensorFlow releases) makes image borders count as edges, as they do there.
    """
    if neighbours not in _LAPLACIAN_KERNELS:
        raise ValueError(f"neighbours must be 4 or 8, got {neighbours}")
    kernel = torch.tensor(_LAPLACIAN_KERNELS[neighbours], dtype=image.dtype, device=image.device)
    return F.conv2d(image, kernel.view(1, 1, 3, 3), padding=1)


def _split(fused: torch.Tensor, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if fused.dim() != 4 or fused.shape[1] != 1 or sources.shape[1] != 2 or fused.shape[-2:] != sources.shape[-2:]:
        raise ValueError(
            f"expected fused (N, 1, H, W) and sources (N, 2, H, W), got {tuple(fused.shape)} and {tuple(sources.shape)}"
        )
    return sources[:, :1], sources[:, 1:]


@torch.no_grad()
def source_information_weights(sources: torch.Tensor, entropy_weight: float, temperature: float) -> torch.Tensor:
    """FusionDN's adaptive weights (N, 2): ``softmax(entropy_weight * EN(source) / temperature)`` over the sources.

    EN is the Shannon entropy (bits) of each source's 8-bit grey-level histogram (sources in [0, 1]). The
    paper adds a no-reference quality score from a pretrained network (deepIQA) to EN; none is available
    here, so the weights rest on EN alone.
    """
    levels = (sources.clamp(0, 1) * 255).round().double()
    scores = torch.stack([entropy(levels[:, k : k + 1]) for k in range(sources.shape[1])], dim=1)
    return torch.softmax(entropy_weight * scores / temperature, dim=1).to(sources.dtype)


class FusionDNLoss(nn.Module):
    """``sum_k w_k [(1 - SSIM(f, s_k)) + gradient_weight * mean((lap f - lap s_k)^2)]``, averaged over the batch.

    ``w_k`` are :func:`source_information_weights`; ``lap`` is the 8-neighbour Laplacian divided by 8 (the
    release's gradient kernel); SSIM uses an 11x11 Gaussian window (sigma 1.5, MONAI's ``SSIMLoss``).
    Defaults are the release's values for its infrared-visible task (gradient weight 1800, EN weight 12,
    temperature 13). Its perceptual term (VGG-16 features, weight 4e-5) needs a pretrained network and is left
    out. ``forward(fused, sources)``: fused (N, 1, H, W), sources (N, 2, H, W), all in [0, 1].
    """

    def __init__(
        self, gradient_weight: float = 1800.0, entropy_weight: float = 12.0, temperature: float = 13.0
    ) -> None:
        super().__init__()
        if gradient_weight < 0 or temperature <= 0:
            raise ValueError(f"need gradient_weight >= 0 and temperature > 0, got {gradient_weight}, {temperature}")
        self.gradient_weight, self.entropy_weight, self.temperature = gradient_weight, entropy_weight, temperature
        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0, reduction="none")

    def forward(self, fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        _split(fused, sources)
        weights = source_information_weights(sources, self.entropy_weight, self.temperature)
        fused_detail = laplacian(fused, 8) / 8
        terms = []
        for k in range(sources.shape[1]):
            source = sources[:, k : k + 1]
            dissimilarity = self.ssim(fused, source).view(-1)
            detail = ((fused_detail - laplacian(source, 8) / 8) ** 2).mean(dim=(1, 2, 3))
            terms.append(weights[:, k] * (dissimilarity + self.gradient_weight * detail))
        return torch.stack(terms).sum(dim=0).mean()


def _soft_labels(like: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """FusionGAN's soft labels: uniform in [low, high), one per sample."""
    return torch.rand_like(like) * (high - low) + low


class FusionGANLoss(nn.Module):
    """Generator loss ``mean((D(f) - c)^2) + content_weight * [mean((f - s_i)^2)
    + gradient_weight * mean((lap f - lap s_d)^2)]``.

    ``c ~ U(0.7, 1.2)`` per sample; ``s_i`` is the intensity source (the release's infrared image: here the
    functional image, channel ``intensity_channel``) and ``s_d`` the detail source (visible: the anatomical
    image). Images are compared in [-1, 1], the release's range, so the weights (content 100, gradient 5) keep
    their balance against the adversarial term. ``discriminator`` is the network the adversarial term asks.
    """

    def __init__(
        self,
        discriminator: Callable[[torch.Tensor], torch.Tensor],
        content_weight: float = 100.0,
        gradient_weight: float = 5.0,
        intensity_channel: int = 1,
    ) -> None:
        super().__init__()
        if intensity_channel not in (0, 1):
            raise ValueError(f"intensity_channel must be 0 or 1, got {intensity_channel}")
        self.discriminator = discriminator
        self.content_weight, self.gradient_weight = content_weight, gradient_weight
        self.intensity_channel = intensity_channel

    def content(self, fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        _split(fused, sources)
        fused, sources = fused * 2 - 1, sources * 2 - 1
        intensity = sources[:, self.intensity_channel : self.intensity_channel + 1]
        detail = sources[:, 1 - self.intensity_channel : 2 - self.intensity_channel]
        return F.mse_loss(fused, intensity) + self.gradient_weight * F.mse_loss(laplacian(fused), laplacian(detail))

    def forward(self, fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        score = self.discriminator(fused)
        adversarial = ((score - _soft_labels(score, 0.7, 1.2)) ** 2).mean()
        return adversarial + self.content_weight * self.content(fused, sources)


class FusionGANDiscriminatorLoss(nn.Module):
    """Least-squares discriminator loss ``mean((D(real) - b)^2) + mean((D(fused) - a)^2)``,
    ``b ~ U(0.7, 1.2)``, ``a ~ U(0, 0.3)``: the release's soft labels. Takes the two scores."""

    def forward(self, fused_score: torch.Tensor, real_score: torch.Tensor) -> torch.Tensor:
        real = ((real_score - _soft_labels(real_score, 0.7, 1.2)) ** 2).mean()
        fake = ((fused_score - _soft_labels(fused_score, 0.0, 0.3)) ** 2).mean()
        return real + fake
