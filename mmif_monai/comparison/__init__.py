"""Moved: the comparison and the ablation are part of :mod:`mmif_monai.studies`. The old module paths
(``mmif_monai.comparison.report``, ``.methods``, ``.training``, ``.timing``, ``.ablation``) import the new modules,
and the package's names forward there, with a DeprecationWarning."""

from mmif_monai._moved import alias_modules, forward_names

alias_modules(
    {
        f"{__name__}.report": "mmif_monai.studies.comparison",
        **{
            f"{__name__}.{name}": f"mmif_monai.studies.{name}" for name in ("methods", "training", "timing", "ablation")
        },
    }
)
__getattr__ = forward_names(
    __name__,
    "mmif_monai.studies",
    names=("COMPARISON_METHODS", "ComparisonMethod", "ComparisonSettings", "TrainingBudget", "bundle_config_files",
           "cpu_ms_per_pair", "load_comparison_network", "parameter_count", "read_state_dict", "run_comparison",
           "train_bundle", "train_method", "train_mmif_net"),
)  # fmt: skip
