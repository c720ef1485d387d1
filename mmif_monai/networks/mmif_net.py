"""MMIF-Net: Liu et al., "MMIF: Multimodal Medical Image Fusion Network Based on Multi-Scale Hybrid Attention", 2025.

Structure (docs/method.md gives each choice and its reason):

- LatLRR split of each source into a low-rank and a salient part (learned projection, shipped as a buffer);
  both parts run through the same encoder-fusion-decoder in one batch, and the fused parts are summed.
- Encoder, shared by both sources: 3x3 conv, DenseFuse dense block, multi-scale layer (1x1/3x3/5x5 with
  channel-attention weights) and hybrid attention at full resolution; then four downsampling levels
  (max-pooling at levels 1-2, stride-2 conv at levels 3-4), each a bottleneck residual block + hybrid
  attention; non-local self-attention at the smallest level.
- Fusion at every level: l1-norm rule or the learnable FA module.
- Decoder D4..D1: D4, D3 upsample by copying (nearest, "UnSampling"); D2, D1 by max-unpooling
  ("UnPooling") at the peaks of the fused skip maps' 2x2 windows (``unpool_at_peaks``); each stage
  concatenates the fused skip features of its level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmif_monai.decomposition.projection import LatLRRDecomposition
from mmif_monai.networks.blocks import (
    BottleneckResidual,
    DenseBlock,
    HybridAttention,
    MultiScaleLayer,
    NonLocalSelfAttention,
    conv_bn_relu,
    unpool_at_peaks,
)
from mmif_monai.networks.strategies import L1NormFusion, LearnedFusion

__all__ = ["MIN_SIDE", "MMIFNet", "init_weights"]

#: the smallest side MMIF-Net fuses at: smaller slices are zero-padded (background) to it, then cropped back
MIN_SIDE = 64


def init_weights(module: nn.Module, std: float = 0.01) -> None:
    """The paper's initialisation: truncated normal (std 0.01, cut at 2 std) weights, zero bias."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _EncoderLevel(nn.Module):
    """One downsampling level: downsample, bottleneck residual, hybrid attention (+ optional self-attention)."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool, self_attention: bool) -> None:
        super().__init__()
        if pool:
            self.down = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(in_channels, out_channels, kernel_size=1))
        else:
            self.down = conv_bn_relu(in_channels, out_channels, kernel_size=3, strides=2)
        self.residual = BottleneckResidual(out_channels)
        self.attention = HybridAttention(out_channels)
        self.self_attention = NonLocalSelfAttention(out_channels) if self_attention else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.self_attention(self.attention(self.residual(self.down(x))))


class _DecoderStage(nn.Module):
    """One decoder stage: merge the upsampled deeper map with the fused skip map of this level."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.merge = conv_bn_relu(in_channels + skip_channels, out_channels, kernel_size=1)
        self.residual = BottleneckResidual(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.residual(self.merge(torch.cat([x, skip], dim=1)))


class MMIFNet(nn.Module):
    """MMIF-Net for 2D slice pairs.

    Args:
        msl: use the multi-scale layer (else a 1x1 conv takes its place) - the paper's ablation switch.
        sa: use non-local self-attention at the smallest level.
        fa: fuse with the learnable fusion module (else the l1-norm rule at every level).
        decompose: split sources into LatLRR low-rank and salient parts and fuse each.
        features: channels at the full-resolution level and the four downsampled levels.
        stem_features: the full-resolution front end's width: its first convolution's channels, the dense block's
            growth per layer (3 layers) and the multi-scale layer's squeeze; DenseFuse's and the paper's 16.
        projection: the learned 256x256 LatLRR projection (loaded with the state dict when omitted).

    ``forward(anatomical, functional)`` takes two (N, 1, H, W) tensors in [0, 1] (any H, W; below
    :data:`MIN_SIDE` they are fused on a zero canvas of that size and cropped back) and returns
    the fused (N, 1, H, W) in [0, 1]; ``forward(x)`` with one (N, 2, H, W) tensor (channel 0 anatomical,
    channel 1 functional luminance) is MONAI's single-input convention and gives the same result.
    """

    def __init__(
        self,
        msl: bool = True,
        sa: bool = True,
        fa: bool = True,
        decompose: bool = True,
        features: Sequence[int] = (32, 32, 48, 48, 64),
        stem_features: int = 16,
        projection: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.min_side = MIN_SIDE  # an attribute, so that TorchScript can read it
        if len(features) != 5:
            raise ValueError(f"features needs 5 channel counts (full resolution + 4 levels), got {features}")
        f = list(features)
        self.msl, self.sa, self.fa, self.decompose = msl, sa, fa, decompose

        self.decomposition = LatLRRDecomposition(projection)
        dense = DenseBlock(in_channels=stem_features, growth=stem_features, layers=3)
        self.stem = nn.Sequential(
            conv_bn_relu(1, stem_features),
            dense,
            MultiScaleLayer(dense.out_channels, f[0], squeeze_channels=stem_features)
            if msl
            else conv_bn_relu(dense.out_channels, f[0], kernel_size=1),
            HybridAttention(f[0]),
        )
        self.levels = nn.ModuleList(
            _EncoderLevel(f[i], f[i + 1], pool=i < 2, self_attention=sa and i == 3) for i in range(4)
        )
        self.fusions = nn.ModuleList(LearnedFusion(c) if fa else L1NormFusion() for c in f)
        # D4, D3: nearest upsampling; D2, D1: max-unpooling; then the full-resolution head
        self.d4 = nn.Sequential(conv_bn_relu(f[4], f[3], kernel_size=1), BottleneckResidual(f[3]))
        self.d3 = _DecoderStage(f[3], f[3], f[2])
        self.d2 = _DecoderStage(f[2], f[2], f[1])
        self.d1 = _DecoderStage(f[1], f[1], f[0])
        self.head = nn.Sequential(conv_bn_relu(2 * f[0], stem_features), nn.Conv2d(stem_features, 1, 3, padding=1))
        init_weights(self)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of one image batch (N, 1, H, W) at the five levels, finest first."""
        feats = [self.stem(x)]
        for level in self.levels:
            feats.append(level(feats[-1]))
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Image (N, 1, H, W) from (fused) features at the five levels."""
        x = F.interpolate(self.d4(feats[4]), scale_factor=2.0, mode="nearest")
        x = F.interpolate(self.d3(x, feats[3]), scale_factor=2.0, mode="nearest")
        # UnPooling: where the fused skip map of the finer level peaks, as max-pooling it records (ties settled alike
        # on every machine: unpool_at_peaks)
        x = unpool_at_peaks(self.d2(x, feats[2]), feats[1])
        x = unpool_at_peaks(self.d1(x, feats[1]), feats[0])
        return self.head(torch.cat([x, feats[0]], dim=1))

    def fuse_features(self, first: list[torch.Tensor], second: list[torch.Tensor]) -> list[torch.Tensor]:
        fused: list[torch.Tensor] = []
        for i, fusion in enumerate(self.fusions):
            fused.append(fusion(first[i], second[i]))
        return fused

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Autoencoder pass (the paper's training task): encode and decode one image batch, unclamped."""
        padded, pads = self._pad(x)
        return self._crop(self.decode(self.encode(padded)), pads, x.shape[-2], x.shape[-1])

    def forward(self, anatomical: torch.Tensor, functional: torch.Tensor | None = None) -> torch.Tensor:
        if functional is None:
            if anatomical.dim() != 4 or anatomical.shape[1] != 2:
                raise ValueError(f"a single input must be (N, 2, H, W), got {list(anatomical.shape)}")
            functional = anatomical[:, 1:]
            anatomical = anatomical[:, :1]
        if anatomical.shape != functional.shape or anatomical.dim() != 4 or anatomical.shape[1] != 1:
            raise ValueError(
                f"anatomical and functional must both be (N, 1, H, W), got "
                f"{list(anatomical.shape)} and {list(functional.shape)}"
            )
        height, width = anatomical.shape[-2], anatomical.shape[-1]
        # a smaller slice (a cropped volume, a 60 x 72 slice) is fused on a zero (background) canvas of the
        # smallest size the network was trained and checked at, then cropped back
        canvas = self._canvas(height, width, self.min_side)
        anatomical, functional = F.pad(anatomical, canvas), F.pad(functional, canvas)

        if self.decompose:
            # both sources in one decomposition call, then both parts in one batch: (low a, salient a, low f,
            # salient f); the fused parts are summed afterwards
            n = anatomical.shape[0]
            low, salient = self.decomposition(torch.cat([anatomical, functional]))
            sources = torch.cat([low[:n], salient[:n], low[n:], salient[n:]])
        else:
            sources = torch.cat([anatomical, functional])
        batch = sources.shape[0] // 2
        padded, pads = self._pad(sources)
        feats = self.encode(padded)
        fused_feats = self.fuse_features([t[:batch] for t in feats], [t[batch:] for t in feats])
        fused = self._crop(self.decode(fused_feats), pads, anatomical.shape[-2], anatomical.shape[-1])
        if self.decompose:
            half = batch // 2
            fused = fused[:half] + fused[half:]
        return self._crop(fused, canvas, height, width).clamp(0.0, 1.0)

    @staticmethod
    def _canvas(height: int, width: int, side: int) -> list[int]:
        """F.pad widths (left, right, top, bottom) that bring a slice up to side x side; zeros if larger."""
        pad_h, pad_w = max(side - height, 0), max(side - width, 0)
        return [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]

    @staticmethod
    def _pad(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Reflect-pad H and W up to a multiple of 16 so every level halves exactly."""
        # the encoder halves the resolution four times (a literal: TorchScript cannot read module globals)
        pad_h = (-x.shape[-2]) % 16
        pad_w = (-x.shape[-1]) % 16
        pads = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]
        if pad_h == 0 and pad_w == 0:
            return x, pads
        return F.pad(x, pads, mode="reflect"), pads

    @staticmethod
    def _crop(x: torch.Tensor, pads: list[int], height: int, width: int) -> torch.Tensor:
        return x[..., pads[2] : pads[2] + height, pads[0] : pads[0] + width]
