"""Image-level fusion: the classical rules, the colour-aware fusion of image batches and its colour-fidelity limit.

The feature-level rules (l1-norm, FA) are network layers, in :mod:`mmif_monai.networks.strategies`.
``mmif_monai.fusion.methods`` (choosing a method by name, MMIF-Net included) is imported on its own: it loads
the network.
"""

from .classical import (
    CLASSICAL_METHODS,
    average_fusion,
    dwt_fusion,
    laplacian_pyramid_fusion,
    latlrr_fusion,
    max_fusion,
)
from .colour import COLOUR_FIDELITY, LuminanceLimit
from .pipeline import FuseFn, fuse_batch
