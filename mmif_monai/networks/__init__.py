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
from .densefuse import DenseFuse
from .ifcnn import IFCNN
from .nestfuse import NestFuse
from .fusiondn import FusionDN
from .fusiongan import FusionGAN, FusionGANDiscriminator
