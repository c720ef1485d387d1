"""Moved: fusing a list of pairs with several methods is :mod:`mmif_monai.studies.fusions`. This module forwards
its names there."""

from mmif_monai._moved import forward_names

__getattr__ = forward_names(__name__, "mmif_monai.studies.fusions")
