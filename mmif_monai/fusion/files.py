"""Moved: the slice file jobs are :mod:`mmif_monai.jobs.slices`. This module forwards its names there."""

from mmif_monai._moved import forward_names

__getattr__ = forward_names(__name__, "mmif_monai.jobs.slices")
