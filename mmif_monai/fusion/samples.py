"""Moved: fusing a folder laid out like AANLIB is :mod:`mmif_monai.jobs.samples`. This module forwards its names
there (``fuse_dataset_folder`` now takes a method name and returns a :class:`~mmif_monai.jobs.results.JobResult`)."""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from mmif_monai.jobs import samples

    if name not in samples.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} moved to mmif_monai.jobs.samples", DeprecationWarning, stacklevel=2)
    return getattr(samples, name)
