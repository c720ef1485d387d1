from .reconstruction import ReconstructionLoss
