"""Where the repository keeps what ships with it (the bundle, the sample pairs), and the slice file types.

Resolved from this file, so they hold for a source checkout and an editable install.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "BUNDLE_DIR", "SAMPLES_DIR", "DEFAULT_DATASET_DIR", "IMAGE_SUFFIXES"]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_DIR = REPO_ROOT / "bundles" / "mmif_net"
SAMPLES_DIR = REPO_ROOT / "data" / "samples"
#: the AANLIB copy beside the checkout (``../shared/data/aanlib``), as on the project's machines
DEFAULT_DATASET_DIR = REPO_ROOT.parent / "shared" / "data" / "aanlib"

#: 2D slice formats read through PIL
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
