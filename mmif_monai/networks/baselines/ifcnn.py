"""IFCNN: Zhang et al., "IFCNN: A general image fusion framework based on convolutional neural network",
Information Fusion 54, 2020.

Two convolutional layers extract features from each source, an element-wise rule (max, sum or mean) fuses
them, and two layers reconstruct the image:

- CONV1: 7x7 conv 3 -> 64, stride 1 (the paper takes ResNet-101's first layer, pretrained on ImageNet, frozen)
- CONV2: 3x3 conv 64 -> 64 + batch norm + ReLU
- fusion: element-wise max (the paper's choice for multi-focus, infrared-visible and medical images)
- CONV3: 3x3 conv 64 -> 64 + batch norm + ReLU; CONV4: 1x1 conv 64 -> 3

Grey images enter as three equal channels and the 3-channel output is read through its luminance, as the
authors' release does for grey data; padding is by edge replication (3 px before CONV1, 1 px before each 3x3).
No pretrained ResNet-101 can be downloaded here, so CONV1 is trained with the rest unless ``freeze_conv1``
(set it when loading the authors' weights, which carry the ResNet filters) - docs/comparison.md.
"""

from __future__ import annotations

import torch
from torch import nn

from mmif_monai.networks.blocks import replicate_conv_bn_relu, split_sources
from mmif_monai.transforms.color import YIQ_FROM_RGB

__all__ = ["IFCNN", "IFCNN_FUSION_SCHEMES"]

IFCNN_FUSION_SCHEMES = ("max", "sum", "mean")


class IFCNN(nn.Module):
    """IFCNN for 2D slice pairs.

    Args:
        fuse_scheme: ``"max"`` (the paper's rule for medical images), ``"sum"`` or ``"mean"``.
        freeze_conv1: keep CONV1 fixed during training, as the paper does with its ImageNet filters.

    ``forward(anatomical, functional)`` (or one (N, 2, H, W) tensor) returns the fused (N, 1, H, W) in [0, 1];
    ``reconstruct(x)`` is the unclamped autoencoder pass used for training here.
    """

    def __init__(self, fuse_scheme: str = "max", freeze_conv1: bool = False) -> None:
        super().__init__()
        if fuse_scheme not in IFCNN_FUSION_SCHEMES:
            raise ValueError(f"IFCNN fuse_scheme must be one of {IFCNN_FUSION_SCHEMES}, got {fuse_scheme!r}")
        self.fuse_scheme = fuse_scheme
        self.pad1 = nn.ReplicationPad2d(3)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, bias=False)
        self.conv1.requires_grad_(not freeze_conv1)
        self.conv2 = replicate_conv_bn_relu(64)
        self.conv3 = replicate_conv_bn_relu(64)
        self.conv4 = nn.Conv2d(64, 3, kernel_size=1)
        # the luma row of the YIQ matrix the colour pipeline uses; not persistent: no weights, not in state dicts
        self.register_buffer("luma", torch.tensor(YIQ_FROM_RGB[0].tolist()).view(1, 3, 1, 1), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """64-channel features of a grey batch (N, 1, H, W), fed to CONV1 as three equal channels."""
        return self.conv2(self.conv1(self.pad1(x.expand(-1, 3, -1, -1))))

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Grey image (N, 1, H, W), unclamped: the luminance of CONV4's three channels."""
        return (self.conv4(self.conv3(features)) * self.luma).sum(dim=1, keepdim=True)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def forward(self, anatomical: torch.Tensor, functional: torch.Tensor | None = None) -> torch.Tensor:
        anatomical, functional = split_sources(anatomical, functional, "IFCNN")
        batch = anatomical.shape[0]
        features = self.encode(torch.cat([anatomical, functional]))
        first, second = features[:batch], features[batch:]
        if self.fuse_scheme == "max":
            fused = torch.maximum(first, second)
        elif self.fuse_scheme == "sum":
            fused = first + second
        else:
            fused = (first + second) / 2
        return self.decode(fused).clamp(0.0, 1.0)
