"""Fusion metrics of one image triplet as Python floats.

Each function wraps the batched definition in :mod:`mmif_monai.metrics.batched` with a batch of one, so there
is a single implementation of every metric. Inputs are numpy arrays or torch tensors (any device) of 8-bit
grey values (0..255 as float), shaped (H, W) or (1, H, W); apply :func:`~mmif_monai.metrics.to_uint8_grey`
and :func:`~mmif_monai.metrics.stretch_to_uint8_range` first to follow the literature's protocol.
"""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_tensor

from mmif_monai.metrics.batched import batched_metrics

__all__ = ["en", "sd", "sf", "ag", "mi", "scd", "vif", "qabf", "ssim", "psnr", "cc"]


def _as_batch(img: NdarrayOrTensor, role: str) -> torch.Tensor:
    """(1, 1, H, W) float64 tensor of an (H, W) or (1, H, W) image."""
    x = convert_to_tensor(img, dtype=torch.float64)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"{role} image: expected shape (H, W) or (1, H, W), got {tuple(x.shape)}")
    return x[None, None]


def _score(
    name: str,
    fused: NdarrayOrTensor,
    a: NdarrayOrTensor | None = None,
    b: NdarrayOrTensor | None = None,
    ssim_protocol: str = "literature",
) -> float:
    sources = [None if img is None else _as_batch(img, role) for img, role in ((a, "source a"), (b, "source b"))]
    values = batched_metrics(
        _as_batch(fused, "fused"), sources[0], sources[1], names=(name,), ssim_protocol=ssim_protocol
    )
    return float(values[name][0])


def en(fused: NdarrayOrTensor) -> float:
    """Shannon entropy (bits) of the 256-bin grey histogram of the fused image, 0..8."""
    return _score("EN", fused)


def sd(fused: NdarrayOrTensor) -> float:
    """Standard deviation (population) of the fused image's grey values."""
    return _score("SD", fused)


def sf(fused: NdarrayOrTensor) -> float:
    """Spatial frequency sqrt(RF^2 + CF^2) of the fused image."""
    return _score("SF", fused)


def ag(fused: NdarrayOrTensor) -> float:
    """Average gradient of the fused image (central differences)."""
    return _score("AG", fused)


def mi(fused: NdarrayOrTensor, a: NdarrayOrTensor, b: NdarrayOrTensor) -> float:
    """Mutual information (bits) of the fused image with each source, summed: MI(F, A) + MI(F, B)."""
    return _score("MI", fused, a, b)


def scd(fused: NdarrayOrTensor, a: NdarrayOrTensor, b: NdarrayOrTensor) -> float:
    """Sum of the correlations of differences r(F - B, A) + r(F - A, B)."""
    return _score("SCD", fused, a, b)


def vif(fused: NdarrayOrTensor, a: NdarrayOrTensor, b: NdarrayOrTensor) -> float:
    """Pixel-domain 4-scale visual information fidelity of F against A plus that of F against B."""
    return _score("VIF", fused, a, b)


def qabf(fused: NdarrayOrTensor, a: NdarrayOrTensor, b: NdarrayOrTensor) -> float:
    """Xydeas-Petrovic edge preservation Q^{AB/F}, 0..1."""
    return _score("Qabf", fused, a, b)


def ssim(fused: NdarrayOrTensor, a: NdarrayOrTensor, b: NdarrayOrTensor, protocol: str = "literature") -> float:
    """SSIM(F, A) + SSIM(F, B); ``protocol`` "literature" (data_range 2) or "correct" (data_range 255)."""
    return _score("SSIM", fused, a, b, ssim_protocol=protocol)


def psnr(fused: NdarrayOrTensor, a: NdarrayOrTensor, b: NdarrayOrTensor) -> float:
    """10 log10(255^2 / mean(MSE(F, A), MSE(F, B))) in dB."""
    return _score("PSNR", fused, a, b)


def cc(fused: NdarrayOrTensor, a: NdarrayOrTensor, b: NdarrayOrTensor) -> float:
    """Mean of the correlation coefficients r(F, A) and r(F, B)."""
    return _score("CC", fused, a, b)
