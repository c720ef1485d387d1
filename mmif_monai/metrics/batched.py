"""Vectorised torch implementations of the image fusion metrics, one definition per metric.

Every function takes ``(N, 1, H, W)`` tensors of 8-bit grey values (0..255, any float or integer dtype) on
any device and returns an ``(N,)`` float64 tensor on that device; there is no Python loop over images or
pixels. The definitions, sources and blind spots are in ``docs/metrics.md``.

The arithmetic is float64 throughout: local variances are computed as E[x^2] - E[x]^2 on values up to 255^2,
and float32 rounding of those terms (about 1e-2) is larger than the SSIM stabiliser of the literature protocol
(C2 = 3.6e-3) and the VIF thresholds (1e-10), so float32 would change the scores of flat regions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.utils import convert_to_tensor, look_up_option

from mmif_monai.io.preflight import check_protocol_pair

__all__ = [
    "METRIC_NAMES",
    "SSIM_PROTOCOLS",
    "SCORING_PROTOCOLS",
    "check_protocols",
    "resolve_metric_names",
    "batched_metrics",
    "entropy",
    "standard_deviation",
    "spatial_frequency",
    "average_gradient",
    "mutual_information",
    "sum_of_correlations_of_differences",
    "visual_information_fidelity",
    "edge_preservation",
    "structural_similarity",
    "peak_signal_to_noise_ratio",
    "correlation_coefficient",
]

#: Metric names as fusion papers print them, in the order tables use.
METRIC_NAMES: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR", "CC")

#: SSIM protocol -> data_range. "literature": scikit-image's old default for float input (the float range
#: -1..1, so 2) applied to 0..255 data, which is what fusion papers report; "correct": the 8-bit range.
SSIM_PROTOCOLS: dict[str, float] = {"literature": 2.0, "correct": 255.0}

#: Scoring protocols. "project": the definitions as docs/metrics.md states them (MI in bits, a flat source's VIF
#: NaN, Qabf's strength ratio 1 on ties, PSNR against 255). "published": CDDFuse's evaluator as its public code
#: computes them (Zhao et al., CVPR 2023, utils/Evaluator.py): MI in nats, a flat source's VIF counted as 1, Qabf's
#: strength term g_F on ties, PSNR against the fused image's own maximum, SSIM by the literature protocol.
SCORING_PROTOCOLS: tuple[str, ...] = ("project", "published")

_GREY_LEVELS = 256
_PEAK = 255.0

# VIF (Sheikh & Bovik, pixel-domain multi-scale release): model noise variance and threshold.
_VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10
_VIF_SCALES = 4
# Smallest side the 4-scale pyramid fits in: its last level is a 3x3 window on a 3x3 image.
_VIF_MIN_SIZE = 41

# Qabf (Xydeas & Petrovic 2000) sigmoid constants and edge-strength weight exponent.
_QABF_TG, _QABF_KG, _QABF_DG = 0.9994, -15.0, 0.5
_QABF_TA, _QABF_KA, _QABF_DA = 0.9879, -22.0, 0.8
_QABF_L = 1.0
# Separable factors of the Sobel kernels, as correlation weights (see _sobel_strength_orientation).
_SOBEL_SMOOTH = (1.0, 2.0, 1.0)
_SOBEL_DIFF = (1.0, 0.0, -1.0)

# SSIM as scikit-image computes it: 7x7 uniform window, sample covariance, K1, K2 of Wang et al. 2004.
_SSIM_WIN = 7
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def resolve_metric_names(names: Sequence[str] | None) -> tuple[str, ...]:
    """Canonical spelling of ``names`` (case-insensitive; ``None`` -> all of :data:`METRIC_NAMES`).

    Raises:
        ValueError: for an unknown or repeated name.
    """
    if names is None:
        return METRIC_NAMES
    if isinstance(names, str):
        names = (names,)
    canonical = {n.lower(): n for n in METRIC_NAMES}
    resolved = tuple(look_up_option(n.lower(), canonical) for n in names)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"repeated metric name in {list(names)}")
    return resolved


def _check_batch(*images: torch.Tensor) -> list[torch.Tensor]:
    """The images as plain float64 tensors, after checking they are equally shaped (N, 1, H, W) tensors.

    MONAI's ``MetaTensor`` is unwrapped: its metadata bookkeeping on every operation would only slow this down.
    """
    shape = images[0].shape
    for img in images:
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] != 1:
            raise ValueError(f"expected (N, 1, H, W) tensors, got {getattr(img, 'shape', type(img))}")
        if img.shape != shape:
            raise ValueError(f"fused and source batches differ in shape: {tuple(img.shape)} vs {tuple(shape)}")
    return [convert_to_tensor(img, dtype=torch.float64, track_meta=False) for img in images]


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(-3, -2, -1))


def _centred(x: torch.Tensor) -> torch.Tensor:
    """(N, H*W) values minus each image's mean."""
    flat = x.flatten(1)
    return flat - flat.mean(dim=1, keepdim=True)


def _correlation(xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
    """Correlation coefficient of each pair of centred (N, P) images (NaN where an image is constant)."""
    norms = torch.linalg.vector_norm(xc, dim=1) * torch.linalg.vector_norm(yc, dim=1)
    return torch.linalg.vecdot(xc, yc, dim=1) / norms


# ----- histogram metrics -----


def _grey_level_index(x: torch.Tensor) -> torch.Tensor:
    """(N, H*W) integer grey levels; histogram metrics bin by rounding, as 8-bit images are."""
    return x.round().clamp(0, _GREY_LEVELS - 1).long().flatten(1)


def _histograms(index: torch.Tensor, bins: int) -> torch.Tensor:
    """(N, bins) normalised histograms of (N, P) bin indices, with one bincount over the whole batch."""
    n = index.shape[0]
    offsets = torch.arange(n, device=index.device).unsqueeze(1) * bins
    counts = torch.bincount((index + offsets).flatten(), minlength=n * bins).view(n, bins)
    return counts.to(torch.float64) / index.shape[1]


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits along the last dim; xlogy gives 0 log 0 = 0."""
    return torch.special.xlogy(p, p).sum(dim=-1) / -math.log(2)


def entropy(fused: torch.Tensor) -> torch.Tensor:
    """EN: Shannon entropy (bits) of the 256-bin grey histogram."""
    (f,) = _check_batch(fused)
    return _entropy_bits(_histograms(_grey_level_index(f), _GREY_LEVELS))


def _pair_mutual_information(f_levels: torch.Tensor, s_levels: torch.Tensor) -> torch.Tensor:
    """MI (bits) of the joint 256x256 grey histogram of two (N, P) level maps: H(f) + H(s) - H(f, s)."""
    joint = _histograms(f_levels * _GREY_LEVELS + s_levels, _GREY_LEVELS**2).view(-1, _GREY_LEVELS, _GREY_LEVELS)
    return _entropy_bits(joint.sum(2)) + _entropy_bits(joint.sum(1)) - _entropy_bits(joint.flatten(1))


def mutual_information(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, protocol: str = "project"
) -> torch.Tensor:
    """MI: MI(F, A) + MI(F, B) in bits (Qu et al. 2002); in nats under the published protocol (scikit-learn's
    ``mutual_info_score``, which CDDFuse's evaluator calls)."""
    f, a, b = _check_batch(fused, a, b)
    f_levels = _grey_level_index(f)
    bits = _pair_mutual_information(f_levels, _grey_level_index(a)) + _pair_mutual_information(
        f_levels, _grey_level_index(b)
    )
    return bits * math.log(2) if protocol == "published" else bits


# ----- statistics of the fused image -----


def standard_deviation(fused: torch.Tensor) -> torch.Tensor:
    """SD: population standard deviation of the grey values."""
    (f,) = _check_batch(fused)
    # Written out because torch.std is several times slower than this on CPU float64.
    return _centred(f).square_().mean(dim=1).sqrt_()


def spatial_frequency(fused: torch.Tensor) -> torch.Tensor:
    """SF: sqrt(RF^2 + CF^2), RF/CF the RMS of horizontal/vertical neighbour differences."""
    (f,) = _check_batch(fused)
    row_freq_sq = _spatial_mean((f[..., :, 1:] - f[..., :, :-1]) ** 2)
    col_freq_sq = _spatial_mean((f[..., 1:, :] - f[..., :-1, :]) ** 2)
    return torch.sqrt(row_freq_sq + col_freq_sq)


def average_gradient(fused: torch.Tensor) -> torch.Tensor:
    """AG: mean of sqrt((Gx^2 + Gy^2) / 2) with central differences (one-sided at the border)."""
    (f,) = _check_batch(fused)
    grad_y, grad_x = torch.gradient(f, dim=(-2, -1))
    return _spatial_mean(torch.hypot(grad_x, grad_y)) / math.sqrt(2)


# ----- global comparisons with the sources -----


def sum_of_correlations_of_differences(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SCD: r(F - B, A) + r(F - A, B) (Aslantas & Bendes 2015)."""
    f, a, b = _check_batch(fused, a, b)
    fc, ac, bc = _centred(f), _centred(a), _centred(b)  # centring is linear: (F - B) - mean = fc - bc
    return _correlation(fc - bc, ac) + _correlation(fc - ac, bc)


def peak_signal_to_noise_ratio(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, protocol: str = "project"
) -> torch.Tensor:
    """PSNR: 10 log10(255^2 / ((MSE(F, A) + MSE(F, B)) / 2)) in dB; the published protocol puts the fused image's
    own maximum in place of 255."""
    f, a, b = _check_batch(fused, a, b)
    mse = (_spatial_mean((f - a) ** 2) + _spatial_mean((f - b) ** 2)) / 2
    peak = f.amax(dim=(-3, -2, -1)) if protocol == "published" else torch.full_like(mse, _PEAK)
    return 10 * torch.log10(peak**2 / mse)


def correlation_coefficient(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CC: (r(F, A) + r(F, B)) / 2."""
    f, a, b = _check_batch(fused, a, b)
    fc = _centred(f)
    return (_correlation(fc, _centred(a)) + _correlation(fc, _centred(b))) / 2


# ----- windowed comparisons with the sources -----


def _correlate_valid(x: torch.Tensor, weights: Sequence[float], dim: int, step: int = 1) -> torch.Tensor:
    """'valid' correlation of ``x`` with a 1D kernel along ``dim``, keeping every ``step``-th output.

    One vectorised multiply-add per tap, instead of ``F.conv2d``, because CPU convolutions have no fast float64
    path: on this project's 2-core machine a separable 17-tap ``conv2d`` took several times as long.
    """
    size = x.shape[dim] - len(weights) + 1
    index: list[slice] = [slice(None)] * x.ndim

    def tap(i: int) -> torch.Tensor:
        index[dim] = slice(i, i + size, step)
        return x[tuple(index)]

    taps = [(i, w) for i, w in enumerate(weights) if w != 0]
    out = tap(taps[0][0]) * taps[0][1]
    for i, w in taps[1:]:
        out.add_(tap(i), alpha=w)
    return out


def _separable_valid(x: torch.Tensor, weights: Sequence[float], step: int = 1) -> torch.Tensor:
    """'valid' filtering of the last two dims with the outer product of ``weights`` with itself.

    ``step`` subsamples the output, computing only the rows and columns kept.
    """
    return _correlate_valid(_correlate_valid(x, weights, dim=-2, step=step), weights, dim=-1, step=step)


def _local_moments(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, weights: Sequence[float]):
    """Local means of F, A, B, F^2, A^2, B^2, FA, FB ((N, 1, H, W) each) under a separable window.

    One map at a time rather than all eight stacked: on CPU the stacked float64 batch outgrows the cache and
    every tap then streams it from memory.
    """
    maps = (f, a, b, f * f, a * a, b * b, f * a, f * b)
    return [_separable_valid(m, weights)[:, 0] for m in maps]


def _ssim_index(mu_x, mu_y, mean_xx, mean_yy, mean_xy, data_range: float) -> torch.Tensor:
    """Mean SSIM map of one image pair from its local moments, as scikit-image computes it:

    ((2 mu_x mu_y + C1) (2 cov_xy + C2)) / ((mu_x^2 + mu_y^2 + C1) (var_x + var_y + C2)), with the sample
    (co)variances of the window (scikit-image's default ``use_sample_covariance=True``). In-place steps spare
    large temporaries.
    """
    n_px = _SSIM_WIN**2
    cov_norm = n_px / (n_px - 1)
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mu_xy = mu_x * mu_y
    mu_sq = torch.addcmul(mu_x * mu_x, mu_y, mu_y)
    luminance = (2 * mu_xy + c1).div_(mu_sq + c1)
    var_sum = (mean_xx + mean_yy).sub_(mu_sq).mul_(cov_norm).add_(c2)
    structure = (mean_xy - mu_xy).mul_(2 * cov_norm).add_(c2).div_(var_sum)
    return luminance.mul_(structure).mean(dim=(-2, -1))


def structural_similarity(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, protocol: str = "literature"
) -> torch.Tensor:
    """SSIM: SSIM(F, A) + SSIM(F, B), scikit-image's ``structural_similarity`` with the protocol's data_range.

    scikit-image filters with ``uniform_filter`` and then crops the 3-pixel border the window does not fit,
    so the mean runs over the 'valid' window positions, which is what 'valid' filtering gives directly.
    """
    data_range = look_up_option(protocol, SSIM_PROTOCOLS)
    f, a, b = _check_batch(fused, a, b)
    mu_f, mu_a, mu_b, ff, aa, bb, fa, fb = _local_moments(f, a, b, [1.0 / _SSIM_WIN] * _SSIM_WIN)
    return _ssim_index(mu_f, mu_a, ff, aa, fa, data_range) + _ssim_index(mu_f, mu_b, ff, bb, fb, data_range)


def _gaussian_window(size: int) -> list[float]:
    """1D factor of MATLAB's ``fspecial('gaussian', size, size / 5)``, the VIF release's window.

    The normalised 2D kernel is the outer product of this normalised 1D kernel; fspecial's cut of values below
    eps * max never applies at these sizes (the smallest corner value is exp(-5.5) of the centre).
    """
    sigma = size / 5.0
    taps = [math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    return [t / sum(taps) for t in taps]


def _vif_information(var_ref: torch.Tensor, var_dist: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-image sums of the information the distorted and the reference image carry at one scale.

    With gain g = cov / (var_ref + eps) and noise variance var_dist - g cov (at least eps), the LIVE release
    (vifp_mscale) zeroes the gain where the reference or the distorted window is flat (variance below eps) or
    the gain is negative; those windows therefore add nothing to the numerator, which is what the mask says.
    """
    var_ref = var_ref.clamp_min(0)
    var_dist = var_dist.clamp_min(0)
    gain = cov / (var_ref + _VIF_EPS)
    noise_var = (var_dist - gain * cov).clamp_min(_VIF_EPS)
    informative = (var_ref >= _VIF_EPS) & (var_dist >= _VIF_EPS) & (gain > 0)
    num = torch.where(informative, torch.log10(1 + gain**2 * var_ref / (noise_var + _VIF_SIGMA_NSQ)), 0.0)
    den = torch.log10(1 + torch.where(var_ref < _VIF_EPS, 0.0, var_ref) / _VIF_SIGMA_NSQ)
    return num.sum(dim=(-2, -1)), den.sum(dim=(-2, -1))


def visual_information_fidelity(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, protocol: str = "project"
) -> torch.Tensor:
    """VIF: pixel-domain 4-scale VIF (Sheikh & Bovik 2006) of F against A plus that of F against B.

    Scale s uses a Gaussian window of side 2^(5-s) + 1 (17, 9, 5, 3) and sigma = side / 5; from scale 2 on, the
    previous level is filtered with that window and subsampled by 2. Each source's VIF is the ratio of the
    information sums over all scales: NaN where a source is flat everywhere, 1 under the published protocol.
    """
    f, a, b = _check_batch(fused, a, b)
    if min(f.shape[-2:]) < _VIF_MIN_SIZE:
        raise ValueError(f"VIF needs images of at least {_VIF_MIN_SIZE}x{_VIF_MIN_SIZE}, got {tuple(f.shape[-2:])}")
    levels = [f, a, b]
    num = torch.zeros(2, f.shape[0], dtype=torch.float64, device=f.device)
    den = torch.zeros_like(num)
    for scale in range(1, _VIF_SCALES + 1):
        window = _gaussian_window(2 ** (_VIF_SCALES + 1 - scale) + 1)
        if scale > 1:
            levels = [_separable_valid(x, window, step=2) for x in levels]
        mu_f, mu_a, mu_b, ff, aa, bb, fa, fb = _local_moments(levels[0], levels[1], levels[2], window)
        var_f = ff - mu_f**2
        for i, (mu_s, ss, fs) in enumerate(((mu_a, aa, fa), (mu_b, bb, fb))):
            scale_num, scale_den = _vif_information(ss - mu_s**2, var_f, fs - mu_f * mu_s)
            num[i] += scale_num
            den[i] += scale_den
    per_source = num / den
    if protocol == "published":
        per_source = per_source.nan_to_num(nan=1.0)
    return per_source.sum(dim=0)


def _sobel_strength_orientation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge strength sqrt(sx^2 + sy^2) and orientation atan(sy / sx) (pi/2 where sx = 0).

    sx, sy are the zero-padded 'same' convolutions with the Sobel kernels [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    and [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]; as correlations they factor into [1, 2, 1] smoothing across
    and a [1, 0, -1] difference along the gradient direction.
    """
    padded = F.pad(x, (1, 1, 1, 1))
    sx = _correlate_valid(_correlate_valid(padded, _SOBEL_SMOOTH, dim=-2), _SOBEL_DIFF, dim=-1)
    sy = _correlate_valid(_correlate_valid(padded, _SOBEL_SMOOTH, dim=-1), _SOBEL_DIFF[::-1], dim=-2)
    # atan(sy / sx) as atan2 with sx turned positive: the same angle, several times faster than atan on CPU.
    # Where sx = 0 that gives atan2(0, 0) = 0, overwritten with the definition's pi/2.
    orientation = torch.atan2(sy * sx.sign(), sx.abs()).masked_fill_(sx == 0, math.pi / 2)
    return torch.hypot(sx, sy), orientation


def _edge_preservation_map(
    g_src: torch.Tensor, a_src: torch.Tensor, g_f: torch.Tensor, a_f: torch.Tensor, ties_take_fused: bool = False
) -> torch.Tensor:
    """Q^{SF}: product of the sigmoids of relative edge strength and relative orientation.

    T / (1 + exp(k (x - D))) is computed as T * sigmoid(-k (x - D)), in place to spare large temporaries.
    ``ties_take_fused``: where g_S = g_F the strength term is g_F (the published evaluator's rule), not 1.
    """
    # min/max is the definition's g_F/g_S or g_S/g_F. Where both are 0 the ratio is undefined; clamping the
    # divisor makes it 0 there, which does not matter because the source weight g_S^L is 0 too.
    strength = torch.minimum(g_src, g_f).div_(torch.maximum(g_src, g_f).clamp_min_(torch.finfo(g_f.dtype).tiny))
    if ties_take_fused:
        strength = torch.where(g_src == g_f, g_f, strength)
    q_strength = strength.sub_(_QABF_DG).mul_(-_QABF_KG).sigmoid_()
    # orientation term: -ka (A - Da) with A = 1 - |a_S - a_F| / (pi / 2), expanded to one multiply-add
    angle = torch.abs(a_src - a_f)
    q_orientation = angle.mul_(_QABF_KA * 2 / math.pi).add_(-_QABF_KA * (1 - _QABF_DA)).sigmoid_()
    return q_strength.mul_(q_orientation).mul_(_QABF_TG * _QABF_TA)


def edge_preservation(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, protocol: str = "project") -> torch.Tensor:
    """Qabf: edge-strength-weighted mean of the edge preservation of A and of B in F (Xydeas & Petrovic 2000)."""
    f, a, b = _check_batch(fused, a, b)
    (g_f, o_f), (g_a, o_a), (g_b, o_b) = (_sobel_strength_orientation(x[:, 0]) for x in (f, a, b))
    w_a, w_b = g_a**_QABF_L, g_b**_QABF_L
    ties = protocol == "published"
    num = (
        _edge_preservation_map(g_a, o_a, g_f, o_f, ties) * w_a + _edge_preservation_map(g_b, o_b, g_f, o_f, ties) * w_b
    )
    return num.sum(dim=(-2, -1)) / (w_a + w_b).sum(dim=(-2, -1))


# ----- the table of all metrics -----

_FUSED_ONLY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "EN": entropy,
    "SD": standard_deviation,
    "SF": spatial_frequency,
    "AG": average_gradient,
}
_WITH_SOURCES: dict[str, Callable[..., torch.Tensor]] = {
    "MI": mutual_information,
    "SCD": sum_of_correlations_of_differences,
    "VIF": visual_information_fidelity,
    "Qabf": edge_preservation,
    "PSNR": peak_signal_to_noise_ratio,
    "CC": correlation_coefficient,
}
#: the metrics whose computation the scoring protocol changes
_PROTOCOL_DEPENDENT = frozenset({"MI", "VIF", "Qabf", "PSNR"})


def batched_metrics(
    fused: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
    ssim_protocol: str = "literature",
    protocol: str = "project",
) -> dict[str, torch.Tensor]:
    """Fusion metrics of a batch: name -> (N,) float64 tensor on the input's device.

    Args:
        fused: (N, 1, H, W) fused images, 8-bit grey values 0..255.
        a: (N, 1, H, W) first source images (anatomical), same scale; needed unless only EN/SD/SF/AG are asked.
        b: (N, 1, H, W) second source images (functional luminance).
        names: metrics to compute (case-insensitive, see :data:`METRIC_NAMES`); ``None`` computes all.
        ssim_protocol: ``"literature"`` or ``"correct"``, see :data:`SSIM_PROTOCOLS`.
        protocol: ``"project"`` or ``"published"``, see :data:`SCORING_PROTOCOLS` (the published one scores SSIM
            by the literature protocol).

    Raises:
        ValueError: for unknown names or protocols, a published protocol with the correct SSIM, missing sources,
            or mismatched shapes.
    """
    selected = resolve_metric_names(names)
    check_protocols(protocol, ssim_protocol)
    if (a is None or b is None) and any(n not in _FUSED_ONLY for n in selected):
        raise ValueError(f"metrics {[n for n in selected if n not in _FUSED_ONLY]} need both source images")
    results: dict[str, torch.Tensor] = {}
    for name in selected:
        if name in _FUSED_ONLY:
            results[name] = _FUSED_ONLY[name](fused)
        elif name == "SSIM":
            results[name] = structural_similarity(fused, a, b, protocol=ssim_protocol)  # type: ignore[arg-type]
        else:
            options = {"protocol": protocol} if name in _PROTOCOL_DEPENDENT else {}
            results[name] = _WITH_SOURCES[name](fused, a, b, **options)
    return results


def check_protocols(protocol: str, ssim_protocol: str = "literature") -> None:
    """Refuse an unknown scoring or SSIM protocol, and the published protocol with the correct SSIM (it is part of
    what makes numbers comparable with published tables)."""
    look_up_option(protocol, SCORING_PROTOCOLS)
    look_up_option(ssim_protocol, SSIM_PROTOCOLS)
    check_protocol_pair(protocol, ssim_protocol)
