"""Moved: fusing a folder laid out like AANLIB is :mod:`mmif_monai.jobs.samples`. This module forwards its names
there (``fuse_dataset_folder`` now takes a method name and returns a :class:`~mmif_monai.jobs.results.JobResult`)."""

from mmif_monai._moved import forward_names

__getattr__ = forward_names(__name__, "mmif_monai.jobs.samples")
