"""mmif-monai: multimodal medical image fusion (MMIF-Net) built on MONAI."""

from mmif_monai._monai_import import install_monai_import_hook

__version__ = "0.1.0"

install_monai_import_hook()
