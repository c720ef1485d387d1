"""Where training crops are drawn: a weight map of the pixels that hold anatomy or uptake.

About half of an AANLIB MR slice and three quarters of a PET slice are black background; a crop drawn uniformly
spends most of its pixels on nothing. MONAI's ``RandWeightedCrop(d)`` draws crop centres in proportion to a weight
map; :class:`ForegroundWeight` gives it one: 1 where any channel is brighter than ``threshold``, else
``background_weight`` (small but not 0, so that borders and empty corners are still seen now and then).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms.transform import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

__all__ = ["ForegroundWeight", "ForegroundWeightd"]


class ForegroundWeight(Transform):
    """A (1, H, W) crop-centre weight map of a channel-first image: 1 on the foreground, ``background_weight``
    elsewhere. The foreground is every pixel where any channel exceeds ``threshold`` (images in [0, 1]; the default
    is two 8-bit grey levels, above the noise of an exported black background)."""

    backend = [TransformBackends.TORCH]

    def __init__(self, threshold: float = 2 / 255, background_weight: float = 0.01) -> None:
        if background_weight < 0:
            raise ValueError(f"background_weight must be >= 0, got {background_weight}")
        self.threshold = threshold
        self.background_weight = background_weight

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        image = convert_to_tensor(img, track_meta=False)
        foreground = image.amax(dim=0, keepdim=True) > self.threshold
        return torch.where(foreground, 1.0, self.background_weight).to(torch.float32)


class ForegroundWeightd(MapTransform):
    """Dictionary form of :class:`ForegroundWeight`: the weight map of ``keys`` (one key) stored under ``weight_key``,
    for ``RandWeightedCropd(w_key=weight_key)``."""

    backend = ForegroundWeight.backend

    def __init__(
        self,
        keys: KeysCollection,
        weight_key: str = "crop_weight",
        threshold: float = 2 / 255,
        background_weight: float = 0.01,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"ForegroundWeightd makes one weight map from one key, got keys {self.keys}")
        self.weight_key = weight_key
        self.weight = ForegroundWeight(threshold, background_weight)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.weight_key] = self.weight(d[key])
        return d
