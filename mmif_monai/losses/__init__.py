from .reconstruction import ReconstructionLoss
from .fusion import FusionLoss, gradient_magnitude
