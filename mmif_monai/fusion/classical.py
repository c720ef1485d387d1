"""Classical (non-learned) two-image fusion baselines.

Every function takes two image batches ``a`` and ``b`` of identical shape ``(N, C, H, W)`` -- in this project
``(N, 1, H, W)`` intensities in [0, 1] -- and returns the fused batch of the same shape, clamped to [0, 1].

Methods:

* :func:`average_fusion`, :func:`max_fusion`: pixel-wise mean and maximum.
* :func:`laplacian_pyramid_fusion`: Laplacian pyramid (Burt & Adelson, "The Laplacian Pyramid as a Compact
  Image Code", IEEE Trans. Commun. 1983), larger-magnitude detail coefficient, averaged base.
* :func:`dwt_fusion`: discrete wavelet transform (PyWavelets) with the same coefficient rules.
* :func:`latlrr_fusion`: LatLRR decomposition fusion (Li & Wu, "Infrared and visible image fusion using
  latent low-rank representation", arXiv:1804.08992, 2018): averaged low-rank parts plus summed salient parts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pywt
import torch
import torch.nn.functional as F
from monai.networks.layers import separable_filtering

from mmif_monai.decomposition.projection import LatLRRDecomposition, load_projection

__all__ = [
    "average_fusion",
    "max_fusion",
    "laplacian_pyramid_fusion",
    "dwt_fusion",
    "latlrr_fusion",
    "CLASSICAL_METHODS",
]

# Burt & Adelson's generating kernel with a = 0.375, i.e. the binomial filter [1, 4, 6, 4, 1] / 16.
_BINOMIAL_5 = (0.0625, 0.25, 0.375, 0.25, 0.0625)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) image batches, got {a.dim()} dimensions")
    if a.shape != b.shape:
        raise ValueError(f"images to fuse must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _larger_magnitude(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Max-abs selection: keep the coefficient with the larger magnitude (``a`` on ties)."""
    return torch.where(a.abs() >= b.abs(), a, b)


def average_fusion(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixel-wise mean."""
    _check_pair(a, b)
    return ((a + b) / 2).clamp(0.0, 1.0)


def max_fusion(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixel-wise maximum."""
    _check_pair(a, b)
    return torch.maximum(a, b).clamp(0.0, 1.0)


def _binomial_filter(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Separable 5-tap binomial low-pass per channel (MONAI's ``separable_filtering``), replicate borders, same size.

    ``gain`` multiplies each 1D pass, so the 2D filter is scaled by ``gain**2``.
    """
    taps = torch.tensor(_BINOMIAL_5, dtype=x.dtype, device=x.device) * gain
    return separable_filtering(x, [taps, taps], mode="replicate")


def _reduce(x: torch.Tensor) -> torch.Tensor:
    """Burt & Adelson REDUCE: low-pass, then keep every other row and column (odd sizes round up).

    Replicate padding rather than reflect so that levels down to 1 px still work.
    """
    return _binomial_filter(x)[..., ::2, ::2]


def _expand(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Burt & Adelson EXPAND to ``size``: zero-insertion upsampling, then the low-pass with gain 2 per axis.

    The gain restores the mean lost to the inserted zeros. Padding ``x`` by one sample before the insertion
    (instead of padding the upsampled image) keeps inserted zeros from being replicated into the border.
    """
    n, c, h, w = x.shape
    upsampled = x.new_zeros(n, c, 2 * h + 4, 2 * w + 4)
    upsampled[..., ::2, ::2] = F.pad(x, [1, 1, 1, 1], mode="replicate")
    # Output 2k + 2 is centred on sample k of x; its 5-tap window stays inside the canvas, so the filter's own
    # border padding never reaches the kept crop.
    return _binomial_filter(upsampled, gain=2.0)[..., 2 : 2 + size[0], 2 : 2 + size[1]]


def _laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``levels`` band-pass images, finest first, followed by the low-pass residual."""
    pyramid: list[torch.Tensor] = []
    current = x
    for _ in range(levels):
        coarser = _reduce(current)
        pyramid.append(current - _expand(coarser, (current.shape[-2], current.shape[-1])))
        current = coarser
    pyramid.append(current)
    return pyramid


def laplacian_pyramid_fusion(a: torch.Tensor, b: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Laplacian pyramid fusion: max-abs on the ``levels`` band-pass levels, mean of the low-pass residual.

    Any image size works: odd sizes halve to the ceiling, and the reconstruction expands each level back
    to the exact size it was reduced from, so the pyramid of a single image reconstructs it exactly.
    """
    _check_pair(a, b)
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    pyramid_a = _laplacian_pyramid(a, levels)
    pyramid_b = _laplacian_pyramid(b, levels)
    fused = (pyramid_a[-1] + pyramid_b[-1]) / 2
    for detail_a, detail_b in zip(reversed(pyramid_a[:-1]), reversed(pyramid_b[:-1])):
        fused = _larger_magnitude(detail_a, detail_b) + _expand(fused, (detail_a.shape[-2], detail_a.shape[-1]))
    return fused.clamp(0.0, 1.0)


def dwt_fusion(a: torch.Tensor, b: torch.Tensor, wavelet: str = "db2", level: int = 3) -> torch.Tensor:
    """2D DWT fusion: mean of the approximation band, max-abs on every detail band.

    The transform runs in PyWavelets on the last two axes of the whole batch at once (float64, symmetric
    boundary extension); the result is cropped back to ``H x W`` since odd sizes reconstruct one pixel larger.
    """
    _check_pair(a, b)
    height, width = a.shape[-2:]
    coeffs_a = pywt.wavedec2(a.detach().cpu().double().numpy(), wavelet, level=level, axes=(-2, -1))
    coeffs_b = pywt.wavedec2(b.detach().cpu().double().numpy(), wavelet, level=level, axes=(-2, -1))
    fused = [(coeffs_a[0] + coeffs_b[0]) / 2]
    for bands_a, bands_b in zip(coeffs_a[1:], coeffs_b[1:]):
        fused.append(tuple(np.where(np.abs(ca) >= np.abs(cb), ca, cb) for ca, cb in zip(bands_a, bands_b)))
    image = pywt.waverec2(fused, wavelet, axes=(-2, -1))[..., :height, :width]
    return torch.from_numpy(np.ascontiguousarray(image)).to(device=a.device, dtype=a.dtype).clamp(0.0, 1.0)


def latlrr_fusion(
    a: torch.Tensor, b: torch.Tensor, decomposition: LatLRRDecomposition, salient_rule: str = "sum"
) -> torch.Tensor:
    """LatLRR fusion: average the low-rank parts, combine the salient parts, add the two.

    ``salient_rule="sum"`` is Li & Wu's (2018) rule: both images' salient features are kept in full, so fusing
    an image with itself gives ``clamp(x + salient(x))`` (its detail doubled), not ``x``. ``"max_abs"`` keeps
    the larger-magnitude salient value per pixel instead, for which fusing ``x`` with itself returns ``x``.

    Args:
        a, b: images to fuse, ``H, W`` at least the decomposition's patch size.
        decomposition: a :class:`~mmif_monai.decomposition.projection.LatLRRDecomposition` with a learned
            projection, on the images' device.
        salient_rule: ``"sum"`` or ``"max_abs"``.
    """
    _check_pair(a, b)
    if salient_rule not in ("sum", "max_abs"):
        raise ValueError(f"salient_rule must be 'sum' or 'max_abs', got {salient_rule!r}")
    low_rank_a, salient_a = decomposition(a)
    low_rank_b, salient_b = decomposition(b)
    salient = salient_a + salient_b if salient_rule == "sum" else _larger_magnitude(salient_a, salient_b)
    return ((low_rank_a + low_rank_b) / 2 + salient).clamp(0.0, 1.0)


@lru_cache(maxsize=1)
def _shipped_decomposition() -> LatLRRDecomposition:
    """The decomposition with the repository's learned projection, loaded on first use."""
    return LatLRRDecomposition(load_projection()).eval()


def _latlrr_with_shipped_projection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`latlrr_fusion` (sum rule) with the projection shipped in ``bundles/mmif_net/models``."""
    decomposition = _shipped_decomposition().to(a.device)
    with torch.no_grad():
        return latlrr_fusion(a, b, decomposition)


#: Name -> ``fuse(a, b)`` with each method's default settings.
CLASSICAL_METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "average": average_fusion,
    "max": max_fusion,
    "laplacian": laplacian_pyramid_fusion,
    "dwt": dwt_fusion,
    "latlrr": _latlrr_with_shipped_projection,
}
