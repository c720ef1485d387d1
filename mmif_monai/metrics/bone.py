"""Bone fidelity of a fused MRI–CT image: whether the CT's bone still reads as bone (white) after fusion.

CT shows cortical bone at the top of its window, MRI shows it dark (no signal). A fusion that weighs the MRI's
edges at the skull draws the bone grey, with the MRI's dark band inside it: a double contour where the CT has
one solid white structure. Definitions (``docs/colour.md`` gives the reasons and the measured values):

- **Bone region**: CT pixels at or above :data:`BONE_MIN_LEVEL` (8-bit, as written).
- **Brightness kept**: the fused image's mean over the bone region ÷ the CT's mean there.
- **Greyed**: the share of bone pixels the fused image shows below :data:`BONE_MIN_LEVEL`, no longer in the range
  the CT paints bone in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

__all__ = ["BONE_MIN_LEVEL", "BonePixels", "BoneFidelity", "BoneBound", "BONE_BOUND", "bone_pixels"]

#: 8-bit CT level from which a pixel is bone: the AANLIB CT slices paint most of the skull at 255, the brain below 180
BONE_MIN_LEVEL = 200


@dataclass(frozen=True)
class BonePixels:
    """The fused and CT values of the bone pixels of one or more images."""

    fused: np.ndarray
    ct: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[BonePixels]) -> BonePixels:
        return cls(np.concatenate([p.fused for p in parts]), np.concatenate([p.ct for p in parts]))


def bone_pixels(fused: NdarrayOrTensor, ct: NdarrayOrTensor) -> BonePixels:
    """The bone pixels of ``ct`` (values >= :data:`BONE_MIN_LEVEL`) and the fused image's values there; both images
    8-bit grey (H, W) on 0..255."""
    f, c = convert_to_numpy(fused, dtype=np.float64), convert_to_numpy(ct, dtype=np.float64)
    if f.shape != c.shape or f.ndim != 2:
        raise ValueError(f"expected two (H, W) images of one size, got {f.shape} and {c.shape}")
    bone = c >= BONE_MIN_LEVEL
    return BonePixels(f[bone], c[bone])


@dataclass(frozen=True)
class BoneFidelity:
    """Over a set of bone pixels: their count, the brightness kept and the share greyed."""

    pixels: int
    brightness: float
    greyed: float

    @classmethod
    def of(cls, pixels: BonePixels) -> BoneFidelity:
        if pixels.ct.size == 0:
            return cls(0, float("nan"), float("nan"))
        brightness = float(pixels.fused.mean() / pixels.ct.mean())
        return cls(int(pixels.ct.size), brightness, float((pixels.fused < BONE_MIN_LEVEL).mean()))


@dataclass(frozen=True)
class BoneBound:
    """Bone a reader can trust: at most ``greyed`` of the bone pixels shown below the bone level (docs/colour.md)."""

    greyed: float = 0.05

    def met(self, fidelity: BoneFidelity) -> bool:
        return fidelity.greyed <= self.greyed


BONE_BOUND = BoneBound()
