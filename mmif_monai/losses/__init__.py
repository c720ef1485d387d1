from .comparison import FusionDNLoss, FusionGANDiscriminatorLoss, FusionGANLoss, laplacian
from .fusion import FusionLoss, difference_correlation, gradient_magnitude
from .reconstruction import ReconstructionLoss
