"""Paired comparison of fusion methods scored on the same images.

A table of means says which method scored higher on average; a validation study also needs to know whether
the difference is larger than the image-to-image spread could produce by chance. Every method here is scored
on the same source pairs, so the comparison is paired: per image, the difference of a metric between two
methods. Reported per metric: the mean difference, a percentile-bootstrap confidence interval of that mean
(resampling images), and the two-sided Wilcoxon signed-rank p-value (no normality assumed). p-values are not
adjusted for the number of metrics and methods compared.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, wilcoxon

from mmif_monai.io.markdown import markdown_rows
from mmif_monai.metrics.batched import METRIC_NAMES

__all__ = ["PairedDifference", "paired_difference", "paired_comparison", "paired_comparison_table"]

# resamples drawn at once: bounds the bootstrap's memory (chunk x images floats) for large studies
_BOOTSTRAP_CHUNK = 1000


@dataclass(frozen=True)
class PairedDifference:
    """``method − reference`` for one metric over the images where both are defined."""

    mean: float
    low: float
    high: float
    p_value: float
    images: int
    confidence: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """The confidence interval lies wholly above or below zero."""
        return self.low > 0 or self.high < 0

    @property
    def significant(self) -> bool:
        """The interval excludes zero and the signed-rank test rejects at the same level (p < 1 − confidence).

        Both are asked for because they can disagree on few images: the percentile bootstrap's interval is too
        narrow there (with 6 images it can exclude zero at p = 0.16), and the exact signed-rank test cannot
        reach p < 0.05 below 6 images at all.
        """
        return self.excludes_zero and self.p_value < 1 - self.confidence


def paired_difference(
    values: Sequence[float],
    reference_values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> PairedDifference:
    """Mean of ``values − reference_values`` (image by image), its bootstrap interval and Wilcoxon p-value.

    Images where either value is NaN (an undefined metric) are left out; with none left, every field is NaN. With
    one image left the mean is that image's difference, and the interval and p-value are NaN: a single difference
    has no spread to resample or rank.

    Raises:
        ValueError: for sequences of different lengths, or ``confidence`` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    a, b = np.asarray(values, dtype=np.float64), np.asarray(reference_values, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equally long sequences, got {a.shape} and {b.shape}")
    differences = (a - b)[~(np.isnan(a) | np.isnan(b))]
    n = differences.size
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, 0, confidence)
    if n == 1:
        return PairedDifference(float(differences[0]), math.nan, math.nan, math.nan, 1, confidence)
    interval = bootstrap(
        (differences,), np.mean, confidence_level=confidence, n_resamples=resamples, batch=_BOOTSTRAP_CHUNK,
        method="percentile", rng=np.random.default_rng(seed),
    ).confidence_interval  # fmt: skip
    low, high = interval.low, interval.high
    if np.all(differences == 0):
        p_value = 1.0  # the test drops zero differences and has nothing left
    else:
        with warnings.catch_warnings():
            # scipy warns when ties or zeros make it switch from the exact to the normal approximation
            warnings.simplefilter("ignore", UserWarning)
            p_value = float(wilcoxon(differences).pvalue)
    return PairedDifference(float(differences.mean()), float(low), float(high), p_value, n, confidence)


def paired_comparison(
    results: Mapping[str, Mapping[str, Sequence[float]]],
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[tuple[str, str], dict[str, PairedDifference]]:
    """:func:`paired_difference` of every metric for each ``(method, reference)`` pair of ``results``.

    Args:
        results: ``{method: {metric: [value per image]}}``, images in the same order for every method (as
            :func:`mmif_monai.metrics.report.evaluate_folders` returns them).
        pairs: the comparisons, e.g. ``[("mmif-net", "max")]`` for ``mmif-net − max``.
        metrics: the metrics to compare (default: every metric both methods have, in the usual order).

    Raises:
        ValueError: for a method of ``pairs`` that is not in ``results``.
    """
    comparison: dict[tuple[str, str], dict[str, PairedDifference]] = {}
    for method, reference in pairs:
        missing = [m for m in (method, reference) if m not in results]
        if missing:
            raise ValueError(f"no results for {missing}; the methods scored are {sorted(results)}")
        shared = [m for m in METRIC_NAMES if m in results[method] and m in results[reference]]
        names = shared if metrics is None else [m for m in metrics if m in shared]
        comparison[(method, reference)] = {
            name: paired_difference(results[method][name], results[reference][name], confidence, resamples, seed)
            for name in names
        }
    return comparison


def paired_comparison_table(
    comparison: Mapping[tuple[str, str], Mapping[str, PairedDifference]], confidence: float = 0.95
) -> str:
    """Markdown: one row per comparison, one column per metric; a cell is ``mean [low, high] p``.

    Bold cells are :attr:`PairedDifference.significant`: interval and test agree that the difference is not zero.
    A difference over one image is ``mean (interval and p not computable from 1 image)``.
    """
    columns = list(dict.fromkeys(m for differences in comparison.values() for m in differences))
    images = sorted({d.images for differences in comparison.values() for d in differences.values()})
    caption = (
        f"Paired differences (method − reference, per image, then averaged) over {' / '.join(map(str, images))} "
        f"images, with the {confidence:.0%} percentile-bootstrap interval of the mean and the two-sided Wilcoxon "
        "signed-rank p-value (not adjusted for multiple comparisons). Bold: the interval excludes zero and "
        f"p < {1 - confidence:.2g}; on few images the two can disagree, and then neither is taken as evidence."
    )
    rows = []
    for (method, reference), differences in comparison.items():
        cells = [f"{method} − {reference}"]
        for column in columns:
            d = differences.get(column)
            if d is None or math.isnan(d.mean):
                cells.append("")
                continue
            if math.isnan(d.low):
                plural = "" if d.images == 1 else "s"
                cells.append(f"{d.mean:+.4f} (interval and p not computable from {d.images} image{plural})")
                continue
            cell = f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] p={d.p_value:.2g}"
            cells.append(f"**{cell}**" if d.significant else cell)
        rows.append(cells)
    return "\n".join([f"**Table:** {caption}", "", *markdown_rows(["method − reference", *columns], rows)]) + "\n"
