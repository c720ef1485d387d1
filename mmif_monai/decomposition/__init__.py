from . import projection
from .latlrr import learn_projection, sample_patches, solve_latlrr
from .projection import LatLRRDecomposition, default_projection_path, load_projection
