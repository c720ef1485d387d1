"""MONAI cumulative metrics over fusion results, for evaluators and Ignite handlers.

``y_pred`` is the fused image (N, 1, H, W) and ``y`` the two sources (N, 2, H, W) (channel 0 anatomical,
channel 1 functional luminance), all in [0, 1]. Inside, the literature's protocol is applied: the fused image
is min-max stretched to 0..255 and rounded, the sources are scaled to 0..255 and rounded.

:class:`FusionMetric` aggregates to a dict ``{metric name: mean}``. Wrapped in
``monai.handlers.IgniteMetricHandler`` and attached under a name, Ignite puts every entry into
``engine.state.metrics`` by its own name (and the dict under the attached name). An evaluator's
``key_val_metric`` must aggregate to a scalar to track the best checkpoint; :class:`FusionKeyMetric` is the
single-metric form for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from monai.utils import look_up_option

from mmif_monai.metrics.batched import SSIM_PROTOCOLS, batched_metrics, resolve_metric_names
from mmif_monai.metrics.protocol import stretch_to_uint8_range

__all__ = ["FusionMetric", "FusionKeyMetric"]


class _CumulativeFusionMetric(CumulativeIterationMetric):
    """Buffers an (N, len(names)) tensor of per-image values per iteration; subclasses choose the aggregate."""

    def __init__(self, names: Sequence[str] | None = None, ssim_protocol: str = "literature") -> None:
        super().__init__()
        look_up_option(ssim_protocol, SSIM_PROTOCOLS)  # fail here rather than at the first batch
        self.names = resolve_metric_names(names)
        self.ssim_protocol = ssim_protocol

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Per-image values, shape (N, len(names)), in the order of ``self.names``.

        Raises:
            ValueError: if ``y_pred`` is not (N, 1, H, W) or ``y`` not (N, 2, H, W) of the same N, H, W.
        """
        if y_pred.ndim != 4 or y_pred.shape[1] != 1:
            raise ValueError(f"y_pred must be the fused images (N, 1, H, W), got {tuple(y_pred.shape)}")
        if y is None or y.shape != (y_pred.shape[0], 2, *y_pred.shape[2:]):
            got = None if y is None else tuple(y.shape)
            raise ValueError(f"y must be the two sources (N, 2, H, W) matching y_pred {tuple(y_pred.shape)}, got {got}")
        fused = stretch_to_uint8_range(y_pred)
        sources = (y.to(torch.float64) * 255).round().clamp(0, 255)
        values = batched_metrics(
            fused, sources[:, :1], sources[:, 1:], names=self.names, ssim_protocol=self.ssim_protocol
        )
        return torch.stack([values[name] for name in self.names], dim=1)

    def _means(self) -> torch.Tensor:
        """Mean over all buffered images per metric, leaving out images where a metric is undefined (NaN)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor) or data.numel() == 0:
            raise ValueError("no fusion results buffered yet; call the metric on a batch first")
        return torch.nanmean(data, dim=0)


class FusionMetric(_CumulativeFusionMetric):
    """Fusion metrics accumulated over batches; ``aggregate()`` gives ``{name: mean over images}``.

    Args:
        names: metric names (case-insensitive) from :data:`~mmif_monai.metrics.METRIC_NAMES`; ``None`` for all.
        ssim_protocol: ``"literature"`` (scikit-image's old float default data_range = 2 on 0..255 data, the
            numbers papers report) or ``"correct"`` (data_range = 255).

    Example::

        metric = FusionMetric(names=("EN", "MI", "Qabf"))
        for batch in loader:
            metric(y_pred=fuse(batch), y=batch["sources"])
        table = metric.aggregate()  # {"EN": ..., "MI": ..., "Qabf": ...}
        metric.reset()
    """

    def aggregate(self) -> dict[str, float]:
        return dict(zip(self.names, self._means().tolist()))


class FusionKeyMetric(_CumulativeFusionMetric):
    """One fusion metric whose ``aggregate()`` is a scalar tensor, for an evaluator's ``key_val_metric``.

    Args:
        name: the metric (case-insensitive), e.g. ``"Qabf"``.
        ssim_protocol: as for :class:`FusionMetric`.
    """

    def __init__(self, name: str, ssim_protocol: str = "literature") -> None:
        super().__init__(names=(name,), ssim_protocol=ssim_protocol)

    def aggregate(self) -> torch.Tensor:
        return self._means()[0]
