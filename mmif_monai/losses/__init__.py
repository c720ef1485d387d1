from .reconstruction import ReconstructionLoss
from .fusion import FusionLoss, gradient_magnitude
from .comparison import FusionDNLoss, FusionGANDiscriminatorLoss, FusionGANLoss, laplacian
