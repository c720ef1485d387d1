"""Turning listed slice pairs into the item dictionaries MONAI datasets take."""

from __future__ import annotations

from collections.abc import Iterable

from mmif_monai.io.aanlib import FusionPair

__all__ = ["image_items"]


def image_items(pairs: Iterable[FusionPair]) -> list[dict[str, str]]:
    """One ``{"image": path}`` item per source image: the autoencoder learns from both modalities alike."""
    return [{"image": str(path)} for pair in pairs for path in (pair.anatomical, pair.functional)]
