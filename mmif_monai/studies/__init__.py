"""The studies wing: the comparison with the paper's networks (``mmif compare``), the ablation, the validation
scoring and the benchmark's harness, on shared pieces (one method lookup, one bundle-run description, one table
writer, one document preamble and atomic write)."""

from .comparison import ComparisonSettings, run_comparison
from .methods import (
    COMPARISON_METHODS,
    ComparisonMethod,
    bundle_config_files,
    load_comparison_network,
    load_method,
    read_state_dict,
)
from .timing import cpu_ms_per_pair, parameter_count
from .training import BundleInputs, BundleRun, TrainingBudget, train_bundle, train_method, train_mmif_net
