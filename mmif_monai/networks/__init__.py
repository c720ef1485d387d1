from .baselines import IFCNN, DenseFuse, FusionDN, FusionGAN, FusionGANDiscriminator, NestFuse
from .blocks import (
    BottleneckResidual,
    DenseBlock,
    HybridAttention,
    MultiScaleLayer,
    NonLocalSelfAttention,
    SpatialAttention,
    conv_bn_relu,
)
from .mmif_net import MMIFNet, init_weights
from .strategies import L1NormFusion, LearnedFusion, l1_activity, l1_norm_fusion, l1_norm_weights
