"""MONAI Deploy application: a DICOM study in, the fused anatomical + functional DICOM series out.

Needs the ``[deploy]`` extra (MONAI Deploy App SDK, Holoscan). Nothing is imported here, so ``import mmif_monai``
and the base install never need Holoscan: run ``python -m mmif_monai.deploy.app -i STUDY_DIR -o OUT_DIR``, or
import :mod:`mmif_monai.deploy.app` (the application) and :mod:`mmif_monai.deploy.operators` directly.
See docs/deploy.md.
"""
