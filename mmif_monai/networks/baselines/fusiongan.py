"""FusionGAN: Ma, Yu, Liang, Li & Jiang, "FusionGAN: A generative adversarial network for infrared and visible
image fusion", Information Fusion 48, 2019.

A generator maps the concatenated sources to the fused image; its content loss keeps the intensities of the
infrared image and the gradients of the visible one, and a discriminator, trained to tell the visible image
from the fused one, pushes the fused image towards the visible image's texture (``FusionGANLoss``,
``FusionGANDiscriminatorLoss``, trained by ``mmif_monai.engines.AdversarialStep``). For medical pairs the
functional image takes the infrared role (intensity) and the anatomical image the visible role (detail).

- generator: 5x5 conv 2 -> 256, 5x5 256 -> 128, 3x3 128 -> 64, 3x3 64 -> 32 (each + BN + LeakyReLU 0.2),
  1x1 32 -> 1 + tanh; all convs without padding (the release trains on 132 px inputs against 120 px label
  crops); here the input is edge-padded by 6 px first, so the output keeps the input size. Images are mapped
  to [-1, 1] inside, as in the release.
- discriminator: 3x3 stride-2 convs 1 -> 32 -> 64 -> 128 -> 256 without padding (BN on all but the first,
  LeakyReLU 0.2), then a linear layer to one score; the linear layer's size follows from the input size
  (120 px patches in the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmif_monai.networks.blocks import split_sources, valid_conv

__all__ = ["FusionGAN", "FusionGANDiscriminator"]


class FusionGAN(nn.Module):
    """FusionGAN's generator for 2D slice pairs.

    ``forward(anatomical, functional)`` (or one (N, 2, H, W) tensor) returns the fused (N, 1, H, W) in
    [0, 1]. The generator's first layer sees (functional, anatomical): the release's (infrared, visible).
    """

    #: input padding that makes the five unpadded convs size-preserving: (5 + 5 + 3 + 3 + 1 - 5) / 2
    padding = 6

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            valid_conv(2, 256, 5),
            valid_conv(256, 128, 5),
            valid_conv(128, 64, 3),
            valid_conv(64, 32, 3),
            nn.Conv2d(32, 1, kernel_size=1),
        )

    def forward(self, anatomical: torch.Tensor, functional: torch.Tensor | None = None) -> torch.Tensor:
        anatomical, functional = split_sources(anatomical, functional, "FusionGAN")
        x = torch.cat([functional, anatomical], dim=1) * 2 - 1
        x = F.pad(x, [self.padding] * 4, mode="replicate")
        return (torch.tanh(self.layers(x)) + 1) / 2


class FusionGANDiscriminator(nn.Module):
    """FusionGAN's discriminator: one realness score (N, 1) per (N, 1, input_size, input_size) image in [0, 1].

    Args:
        input_size: side of the square patches it judges (the training crop); fixes the linear layer's size.
    """

    def __init__(self, input_size: int = 120) -> None:
        super().__init__()
        side = input_size
        for _ in range(4):
            side = (side - 3) // 2 + 1
        if side < 1:
            raise ValueError(f"FusionGANDiscriminator needs input_size >= 31, got {input_size}")
        self.input_size = input_size
        self.features = nn.Sequential(
            valid_conv(1, 32, 3, strides=2, norm=False),
            valid_conv(32, 64, 3, strides=2),
            valid_conv(64, 128, 3, strides=2),
            valid_conv(128, 256, 3, strides=2),
        )
        self.score = nn.Linear(256 * side * side, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"FusionGANDiscriminator was built for {self.input_size}x{self.input_size}, got {list(image.shape)}"
            )
        return self.score(self.features(image * 2 - 1).flatten(1))
