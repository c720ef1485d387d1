"""mmif-monai: multimodal medical image fusion (MMIF-Net) built on MONAI."""

__version__ = "0.1.0"
