"""Test oracles: plain restatements of what the library computes fast, for the tests and ``scripts/benchmark.py``.

* :func:`reference_metrics`: numpy/scipy versions of the fusion metrics, one image at a time. They restate the
  definitions of :mod:`mmif_monai.metrics.batched` the way fusion evaluation code usually writes them (2D
  ``scipy.signal.convolve2d``, ``numpy.histogram2d``, scikit-image's SSIM), independently of the torch code, so that
  the vectorised versions can be checked against them and the difference timed.
* :func:`decompose_explicit`: the LatLRR decomposition done literally (unfold, project, fold), against which
  :class:`mmif_monai.decomposition.LatLRRDecomposition`'s convolution form is checked.

Not part of the product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity

from mmif_monai.metrics.batched import SSIM_PROTOCOLS

__all__ = ["REFERENCE_METRICS", "reference_metrics", "decompose_explicit"]


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _levels(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).ravel()


def en(f: np.ndarray) -> float:
    counts, _ = np.histogram(_levels(f), bins=256, range=(0, 256))
    return _entropy_bits(counts)


def sd(f: np.ndarray) -> float:
    return float(np.std(f))


def sf(f: np.ndarray) -> float:
    row = np.mean((f[:, 1:] - f[:, :-1]) ** 2)
    col = np.mean((f[1:, :] - f[:-1, :]) ** 2)
    return float(np.sqrt(row + col))


def ag(f: np.ndarray) -> float:
    gy, gx = np.gradient(f)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2)))


def _mi_pair(f: np.ndarray, s: np.ndarray) -> float:
    joint, _, _ = np.histogram2d(_levels(f), _levels(s), bins=256, range=[[0, 256], [0, 256]])
    return _entropy_bits(joint.sum(axis=1)) + _entropy_bits(joint.sum(axis=0)) - _entropy_bits(joint)


def mi(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return _mi_pair(f, a) + _mi_pair(f, b)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant image gives NaN, as in the torch code
        return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return _corr(f - b, a) + _corr(f - a, b)


def cc(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return (_corr(f, a) + _corr(f, b)) / 2


def psnr(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    mse = (np.mean((f - a) ** 2) + np.mean((f - b) ** 2)) / 2
    return float(10 * np.log10(255.0**2 / mse))


def ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray, protocol: str = "literature") -> float:
    data_range = SSIM_PROTOCOLS[protocol]
    return float(
        structural_similarity(f, a, data_range=data_range) + structural_similarity(f, b, data_range=data_range)
    )


def _fspecial_gaussian(size: int) -> np.ndarray:
    half = (size - 1) / 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    h = np.exp(-(x**2 + y**2) / (2 * (size / 5.0) ** 2))
    return h / h.sum()


def _vif_pair(ref: np.ndarray, dist: np.ndarray) -> float:
    eps, sigma_nsq = 1e-10, 2.0
    num = den = 0.0
    for scale in range(1, 5):
        win = _fspecial_gaussian(2 ** (5 - scale) + 1)
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1 = convolve2d(ref, win, mode="valid")
        mu2 = convolve2d(dist, win, mode="valid")
        s1 = np.maximum(convolve2d(ref * ref, win, mode="valid") - mu1**2, 0)
        s2 = np.maximum(convolve2d(dist * dist, win, mode="valid") - mu2**2, 0)
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g**2 * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    # a flat reference carries no information (den = num = 0): VIF is undefined, the nan 0 / 0 gives
    return float(num / den) if den else math.nan


def vif(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return _vif_pair(a, f) + _vif_pair(b, f)


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx = convolve2d(img, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float), mode="same")
    sy = convolve2d(img, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float), mode="same")
    angle = np.full(img.shape, math.pi / 2)
    nonzero = sx != 0
    angle[nonzero] = np.arctan(sy[nonzero] / sx[nonzero])
    return np.sqrt(sx**2 + sy**2), angle


def _q_map(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    ratio = np.zeros_like(g_s)
    src_stronger = g_s > g_f
    ratio[src_stronger] = g_f[src_stronger] / g_s[src_stronger]
    fused_stronger = g_f > g_s
    ratio[fused_stronger] = g_s[fused_stronger] / g_f[fused_stronger]
    ratio[(g_s == g_f) & (g_s > 0)] = 1.0
    relative_angle = 1 - np.abs(a_s - a_f) / (math.pi / 2)
    q_g = 0.9994 / (1 + np.exp(-15 * (ratio - 0.5)))
    q_a = 0.9879 / (1 + np.exp(-22 * (relative_angle - 0.8)))
    return q_g * q_a


def qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    g_a, a_a = _sobel(a)
    g_b, a_b = _sobel(b)
    g_f, a_f = _sobel(f)
    num = np.sum(_q_map(g_a, a_a, g_f, a_f) * g_a + _q_map(g_b, a_b, g_f, a_f) * g_b)
    return float(num / np.sum(g_a + g_b))


#: name -> reference function; EN/SD/SF/AG take the fused image only, SSIM also a ``protocol`` keyword.
REFERENCE_METRICS: dict[str, Callable[..., float]] = {
    "EN": en,
    "SD": sd,
    "SF": sf,
    "AG": ag,
    "MI": mi,
    "SCD": scd,
    "VIF": vif,
    "Qabf": qabf,
    "SSIM": ssim,
    "PSNR": psnr,
    "CC": cc,
}


def reference_metrics(
    f: np.ndarray, a: np.ndarray, b: np.ndarray, names: Sequence[str] | None = None, ssim_protocol: str = "literature"
) -> dict[str, float]:
    """All (or ``names``) reference metrics of one 2D float64 triplet of 0..255 grey values."""
    results = {}
    for name in names or REFERENCE_METRICS:
        fn = REFERENCE_METRICS[name]
        if name in ("EN", "SD", "SF", "AG"):
            results[name] = fn(f)
        elif name == "SSIM":
            results[name] = fn(f, a, b, protocol=ssim_protocol)
        else:
            results[name] = fn(f, a, b)
    return results


def decompose_explicit(x: torch.Tensor, projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference decomposition done literally: unfold every stride-1 patch, project, fold, average.

    Uses the same reflect padding as :class:`LatLRRDecomposition`; about 68 times slower for 16x16 patches,
    the oracle that the convolution form is checked against.

    Args:
        x: ``(N, C, H, W)`` images with ``H, W >= patch_size``.
        projection: ``(patch_size**2, patch_size**2)`` projection.

    Returns:
        ``(low_rank, salient)``, both shaped like ``x``.
    """
    p = math.isqrt(projection.shape[0])
    n, c, h, w = x.shape
    if h < p or w < p:
        raise ValueError(f"LatLRR decomposition needs H and W of at least {p} px, got {h}x{w}")
    pad = p - 1
    planes = F.pad(x.reshape(n * c, 1, h, w), [pad, pad, pad, pad], mode="reflect")
    padded_size = (h + 2 * pad, w + 2 * pad)
    patches = F.unfold(planes, kernel_size=p)
    summed = F.fold(projection.to(x.dtype) @ patches, padded_size, kernel_size=p)
    counts = F.fold(torch.ones_like(patches), padded_size, kernel_size=p)
    salient = (summed / counts)[..., pad : pad + h, pad : pad + w].reshape(n, c, h, w)
    return x - salient, salient


# ----- the published protocol: CDDFuse's evaluator (Zhao et al., CVPR 2023, utils/Evaluator.py), restated -----


def _q_map_published(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """As :func:`_q_map` but with that evaluator's rule on ties: the strength term is g_F where g_S = g_F."""
    ratio = np.zeros_like(g_s)
    src_stronger, fused_stronger, tie = g_s > g_f, g_f > g_s, g_s == g_f
    ratio[src_stronger] = g_f[src_stronger] / g_s[src_stronger]
    ratio[fused_stronger] = g_s[fused_stronger] / g_f[fused_stronger]
    ratio[tie] = g_f[tie]
    relative_angle = 1 - np.abs(a_s - a_f) / (math.pi / 2)
    return 0.9994 / (1 + np.exp(-15 * (ratio - 0.5))) * 0.9879 / (1 + np.exp(-22 * (relative_angle - 0.8)))


def published_reference_metrics(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The metrics the published protocol changes (MI, VIF, Qabf, PSNR), the way that evaluator computes them."""
    from sklearn.metrics import mutual_info_score

    g_a, o_a = _sobel(a)
    g_b, o_b = _sobel(b)
    g_f, o_f = _sobel(f)
    qabf_num = np.sum(_q_map_published(g_a, o_a, g_f, o_f) * g_a + _q_map_published(g_b, o_b, g_f, o_f) * g_b)
    vifs = [_vif_pair(s, f) for s in (a, b)]
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2
    return {
        "MI": mutual_info_score(f.ravel(), a.ravel()) + mutual_info_score(f.ravel(), b.ravel()),
        "VIF": sum(1.0 if math.isnan(v) else v for v in vifs),
        "Qabf": float(qabf_num / np.sum(g_a + g_b)),
        "PSNR": float(10 * np.log10(np.max(f) ** 2 / mse)),
    }
