"""Fusion rules (feature-level and classical image-level) and the colour-aware fusion of image batches.

``mmif_monai.fusion.methods`` (choosing a method by name, MMIF-Net included) is imported on its own: it loads
the network, which itself uses the rules here.
"""

from .classical import (
    CLASSICAL_METHODS,
    average_fusion,
    dwt_fusion,
    laplacian_pyramid_fusion,
    latlrr_fusion,
    max_fusion,
)
from .pipeline import FuseFn, fuse_batch
from .strategies import L1NormFusion, LearnedFusion, l1_activity, l1_norm_fusion, l1_norm_weights
