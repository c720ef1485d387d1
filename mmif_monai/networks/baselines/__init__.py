"""The networks MMIF-Net is compared with (DenseFuse, IFCNN, NestFuse, FusionDN, FusionGAN), and the conversion
of their authors' released weights to these modules' keys."""

from .densefuse import DenseFuse
from .fusiondn import FusionDN
from .fusiongan import FusionGAN, FusionGANDiscriminator
from .ifcnn import IFCNN
from .nestfuse import NestFuse
