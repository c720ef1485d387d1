from .comparison import FusionDNLoss, FusionGANDiscriminatorLoss, FusionGANLoss, laplacian
from .fusion import FusionLoss, gradient_magnitude
from .reconstruction import ReconstructionLoss
