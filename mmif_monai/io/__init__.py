from . import aanlib
from .aanlib import DEFAULT_VALIDATION_CASES, PAIR_TYPES, FusionPair, list_pairs, split_pairs
