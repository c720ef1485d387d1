"""Building blocks (2D): MMIF-Net's dense block, multi-scale layer, bottleneck residual and hybrid attention, and
the convolution units and input handling that MMIF-Net and the compared networks share.

All blocks are TorchScript-scriptable so the bundle's ``ckpt_export`` can script the whole network.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from monai.networks.blocks import ADN, ChannelSELayer, Convolution
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "conv_bn_relu",
    "reflect_conv",
    "valid_conv",
    "replicate_conv_bn_relu",
    "split_sources",
    "DenseBlock",
    "MultiScaleLayer",
    "BottleneckResidual",
    "SpatialAttention",
    "HybridAttention",
    "NonLocalSelfAttention",
    "fold_batch_norm",
    "unpool_at_peaks",
]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, strides: int = 1) -> Convolution:
    """Convolution -> batch norm -> ReLU, the unit the paper uses throughout (MONAI ``Convolution``)."""
    return Convolution(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        strides=strides,
        norm="batch",
        act="relu",
    )


def reflect_conv(
    in_channels: int, out_channels: int, kernel_size: int = 3, act: str | tuple | None = "relu", norm: str | None = None
) -> nn.Sequential:
    """Reflection padding then a MONAI ``Convolution`` (conv -> [norm] -> [act]); keeps the size for odd kernels.

    The fusion papers' released code pads by reflection before every convolution, which avoids dark image
    borders; the conv itself is ``[1].conv`` in the state dict.
    """
    conv = Convolution(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        padding=0,
        act=act,
        norm=norm,
        conv_only=act is None and norm is None,
    )
    return nn.Sequential(nn.ReflectionPad2d(kernel_size // 2), conv)


def split_sources(
    anatomical: torch.Tensor, functional: torch.Tensor | None, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two (N, 1, H, W) sources from either two tensors or MONAI's single (N, 2, H, W) input."""
    if functional is None:
        if anatomical.dim() != 4 or anatomical.shape[1] != 2:
            raise ValueError(f"{name}: a single input must be (N, 2, H, W), got {list(anatomical.shape)}")
        return anatomical[:, :1], anatomical[:, 1:]
    if anatomical.shape != functional.shape or anatomical.dim() != 4 or anatomical.shape[1] != 1:
        raise ValueError(
            f"{name}: anatomical and functional must both be (N, 1, H, W), got "
            f"{list(anatomical.shape)} and {list(functional.shape)}"
        )
    return anatomical, functional


LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.2})


def valid_conv(
    in_channels: int, out_channels: int, kernel_size: int, strides: int = 1, norm: bool = True
) -> Convolution:
    """FusionGAN's unit: an unpadded ('valid') convolution -> [batch norm] -> leaky ReLU (slope 0.2)."""
    return Convolution(
        2, in_channels, out_channels, kernel_size=kernel_size, strides=strides, padding=0,
        norm="batch" if norm else None, act=LEAKY_RELU,
    )  # fmt: skip


def replicate_conv_bn_relu(channels: int) -> nn.Sequential:
    """IFCNN's ConvBlock: replicate-pad 1 px, 3x3 conv without bias, batch norm, ReLU."""
    conv = Convolution(2, channels, channels, kernel_size=3, padding=0, bias=False, norm="batch", act="relu")
    return nn.Sequential(nn.ReplicationPad2d(1), conv)


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` in which each MONAI ``Convolution``'s batch norm is folded into its conv.

    In eval mode batch norm is a per-channel affine map, so ``BN(conv(x))`` is one convolution with rescaled
    weights and a shifted bias: the same function (to float rounding) with one full pass over the feature map
    fewer per convolution. The copy is for inference only (its batch norms are gone, so it neither trains nor
    loads the original state dict); ``module`` itself is left unchanged.
    """
    folded = copy.deepcopy(module).eval()
    for unit in folded.modules():
        if not (isinstance(unit, Convolution) and isinstance(getattr(unit, "adn", None), ADN)):
            continue
        norm = getattr(unit.adn, "N", None)
        if isinstance(norm, nn.BatchNorm2d) and isinstance(unit.conv, nn.Conv2d):
            unit.conv = fuse_conv_bn_eval(unit.conv, norm)
            cast(ADN, unit.adn).N = nn.Identity()
        act = getattr(unit.adn, "A", None)
        if isinstance(act, nn.ReLU):
            act.inplace = True  # the conv output is a fresh tensor, nothing else reads it
    return folded


def unpool_at_peaks(x: torch.Tensor, reference: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-6) -> torch.Tensor:
    """UnPooling: ``x`` (N, C, H, W) upsampled 2x by placing each value where ``reference`` (N, C, 2H, 2W) peaks in its
    2x2 window, zeros at the window's other three positions.

    It is max-unpooling with the indices of max-pooling ``reference``, with ties settled one way everywhere: the
    first position in row order whose value lies within ``atol + rtol * |peak|`` of the window's peak. Argmax
    indices settle ties (flat background, ReLU zeros: most windows of a trained network's features) however the
    pooling kernel meets them, which differs between CPU kernels and memory formats, and a rounding-level
    difference turns into a value moved to the neighbouring pixel: the same input fused differently from machine
    to machine. PyTorch's reference kernel takes the first exact maximum in row order, so on exact ties this
    agrees with it. The ops (space-to-depth, a comparison, a running sum, depth-to-space) also export to ONNX,
    which ``max_unpool2d`` with an output size does not.
    """
    n, c, height, width = x.shape
    windows = F.pixel_unshuffle(reference, 2).view(n, c, 4, height, width)  # the 4 positions of each window, row order
    peak = windows.amax(dim=2, keepdim=True)
    at_peak = windows >= peak - (atol + rtol * peak.abs())
    first = at_peak & (at_peak.cumsum(dim=2) == 1)
    placed = x.unsqueeze(2) * first
    return F.pixel_shuffle(placed.view(n, 4 * c, height, width), 2)


class DenseBlock(nn.Module):
    """DenseFuse's dense block: each 3x3 conv sees the concatenation of the input and all earlier outputs.

    Output channels: ``in_channels + layers * growth`` (16 + 3 * 16 = 64 in DenseFuse and MMIF-Net).
    Not MONAI's ``DenseBlock``: it does the same concatenation but names its children ``layers0, layers1, ...``,
    while the shipped weights and the DenseFuse converter's key map use ``layers.0, layers.1, ...``.
    """

    def __init__(self, in_channels: int = 16, growth: int = 16, layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(conv_bn_relu(in_channels + i * growth, growth) for i in range(layers))
        self.out_channels = in_channels + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class MultiScaleLayer(nn.Module):
    """Parallel 1x1 / 3x3 / 5x5 branches combined with channel-attention weights (selective-kernel style).

    A 1x1 squeeze first reduces the channels so that the 5x5 branch stays affordable at full resolution.
    The branch weights are a softmax over branches per output channel, computed from the globally pooled
    sum of the branches (Li et al., "Selective Kernel Networks", CVPR 2019, which the paper's layer follows).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        squeeze_channels: int = 16,
        kernel_sizes: Sequence[int] = (1, 3, 5),
        reduction: int = 4,
    ) -> None:
        super().__init__()
        self.squeeze = conv_bn_relu(in_channels, squeeze_channels, kernel_size=1)
        self.branches = nn.ModuleList(conv_bn_relu(squeeze_channels, out_channels, kernel_size=k) for k in kernel_sizes)
        hidden = max(out_channels // reduction, 4)
        self.attention = nn.Sequential(
            nn.Linear(out_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_channels * len(kernel_sizes))
        )
        self.num_branches = len(kernel_sizes)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        feats = [branch(x) for branch in self.branches]
        # the pooled sum of the branches is the sum of their pooled maps: no (N, B, C, H, W) stack is built,
        # which at full resolution cost more than the three convolutions (docs/benchmarks.md)
        descriptor = feats[0].mean(dim=(2, 3))
        for feat in feats[1:]:
            descriptor = descriptor + feat.mean(dim=(2, 3))
        logits = self.attention(descriptor).view(x.shape[0], self.num_branches, self.out_channels, 1, 1)
        weights = torch.softmax(logits, dim=1)
        out = feats[0] * weights[:, 0]
        for b in range(1, self.num_branches):
            out.addcmul_(feats[b], weights[:, b])
        return out


class BottleneckResidual(nn.Module):
    """Residual block of three 1x1 convs (compress -> transform -> expand), the paper's light residual unit."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        inner = max(channels // reduction, 4)
        self.body = nn.Sequential(
            conv_bn_relu(channels, inner, kernel_size=1),
            conv_bn_relu(inner, inner, kernel_size=1),
            Convolution(2, inner, channels, kernel_size=1, norm="batch", act=None),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: a 7x7 conv over channel-wise mean and max maps, sigmoid-gated."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class HybridAttention(nn.Module):
    """Channel attention (MONAI's squeeze-excitation ``ChannelSELayer``) followed by spatial attention."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channel = ChannelSELayer(spatial_dims=2, in_channels=channels, r=reduction)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class NonLocalSelfAttention(nn.Module):
    """Non-local self-attention over positions (the paper's Eq. 1-3) with a global-pooling gate (Eq. 4).

    query/key/value are 1x1 projections; attention is the softmax over all positions of the scaled
    query-key products; the attended values are projected back and added to the input. The paper's Eq. 4
    pools globally; here the global average of the attended map gates it channel-wise before the residual
    sum (docs/method.md). The cost is quadratic in positions, so the network uses it at its smallest scale.
    """

    def __init__(self, channels: int, inner_channels: int | None = None) -> None:
        super().__init__()
        inner = inner_channels or max(channels // 2, 8)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.project = nn.Conv2d(inner, channels, 1)
        self.gate = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # (N, 1, HW, C'): one head, in the 4D layout (batch, heads, tokens, channels) that torch's ONNX exporter takes
        q = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)
        k = self.key(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(x).flatten(2).transpose(1, 2).unsqueeze(1)
        # scaled by 1/sqrt(C') as the paper's Eq. 1; the fused kernel never materialises the HW x HW map on GPU
        attended = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # (N, HW, C')
        attended = self.project(attended.transpose(1, 2).reshape(n, -1, h, w))
        gate = torch.sigmoid(self.gate(attended.mean(dim=(2, 3)))).view(n, c, 1, 1)
        return x + gate * attended
