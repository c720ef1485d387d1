"""The comparison of MMIF-Net with the networks of its paper's Tables 2 and 3 (``mmif compare``)."""

from .methods import COMPARISON_METHODS, ComparisonMethod, bundle_config_files, load_comparison_network, read_state_dict
from .report import ComparisonSettings, run_comparison
from .timing import cpu_ms_per_pair, parameter_count
from .training import TrainingBudget, bundle_command, train_bundle, train_method, train_mmif_net
