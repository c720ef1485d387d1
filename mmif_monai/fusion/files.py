"""Moved: the slice file jobs are :mod:`mmif_monai.jobs.slices`. This module forwards its names there."""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from mmif_monai.jobs import slices

    if name not in slices.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} moved to mmif_monai.jobs.slices", DeprecationWarning, stacklevel=2)
    return getattr(slices, name)
