"""Image fusion evaluation metrics: EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, PSNR, CC.

- :mod:`~mmif_monai.metrics.functional`: one triplet -> Python float (``en``, ``mi``, ``ssim``, ...).
- :mod:`~mmif_monai.metrics.batched`: vectorised torch definitions on (N, 1, H, W) batches, ``batched_metrics``.
- :mod:`~mmif_monai.metrics.protocol`: the literature's 8-bit grey / luminance / stretch preprocessing.
- :mod:`~mmif_monai.metrics.fusion_metric`: MONAI cumulative metrics for evaluators and Ignite handlers.
- :mod:`~mmif_monai.metrics.report`: scoring folders, CSV / Markdown / plot writers, the reporting transform.
- :mod:`~mmif_monai.metrics.statistics`: paired differences between methods (bootstrap interval, Wilcoxon test).
- :mod:`~mmif_monai.metrics.colour`: colour fidelity of fused PET/SPECT images, CIEDE2000 per colour-scale step
  (imported on its own: it loads scikit-image's colour module; ``docs/colour.md``).
- :mod:`~mmif_monai.metrics.bone`: whether a fused MRI–CT image still shows the CT's bone white (``docs/colour.md``).

Definitions, sources, ranges and blind spots: ``docs/metrics.md``.
"""

from mmif_monai.metrics.batched import (
    METRIC_NAMES,
    SCORING_PROTOCOLS,
    SSIM_PROTOCOLS,
    batched_metrics,
    check_protocols,
    resolve_metric_names,
)
from mmif_monai.metrics.functional import ag, cc, en, mi, psnr, qabf, scd, sd, sf, ssim, vif
from mmif_monai.metrics.fusion_metric import FusionKeyMetric, FusionMetric
from mmif_monai.metrics.protocol import LUMA_WEIGHTS, stretch_to_uint8_range, to_uint8_grey
from mmif_monai.metrics.report import (
    evaluate_folders,
    image_files,
    image_names,
    load_grey,
    markdown_table,
    plot_results,
    summarise,
    write_csv,
    write_evaluation,
)
from mmif_monai.metrics.statistics import (
    PairedDifference,
    paired_comparison,
    paired_comparison_table,
    paired_difference,
)

__all__ = [
    "PairedDifference",
    "paired_difference",
    "paired_comparison",
    "paired_comparison_table",
    "METRIC_NAMES",
    "SSIM_PROTOCOLS",
    "SCORING_PROTOCOLS",
    "check_protocols",
    "LUMA_WEIGHTS",
    "resolve_metric_names",
    "batched_metrics",
    "en",
    "sd",
    "sf",
    "ag",
    "mi",
    "scd",
    "vif",
    "qabf",
    "ssim",
    "psnr",
    "cc",
    "to_uint8_grey",
    "stretch_to_uint8_range",
    "FusionMetric",
    "FusionKeyMetric",
    "evaluate_folders",
    "image_files",
    "image_names",
    "load_grey",
    "summarise",
    "write_csv",
    "markdown_table",
    "write_evaluation",
    "plot_results",
]
