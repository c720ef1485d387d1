from . import projection
from .latlrr import learn_projection, sample_patches, solve_latlrr
from .projection import LatLRRDecomposition, decompose_explicit, default_projection_path, load_projection
