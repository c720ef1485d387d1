"""Another scanner's intensities: a deterministic shift of an image's grey levels, for scoring how a fusion model
holds up on scans that differ from the ones it was trained and validated on.

An external AANLIB test split prepared elsewhere has MR slices with a mean grey of about 35 of 255 against about
75 here, and more background (about 61 % of pixels below 5, against 47 %); a model scored lower there than on
this repository's validation split (the project's issue on CPU training). :class:`ScaleMeanByGamma` gives the
same pairs that look: a gamma curve ``x ** gamma`` on [0, 1] with ``gamma`` solved per image so that the mean grey
becomes ``ratio`` times its own. A gamma above 1 darkens the dark and mid greys most, so faint tissue sinks
towards the background, and compresses contrast in the dark range while stretching it in the bright one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms.transform import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = ["ScaleMeanByGamma", "ScaleMeanByGammad", "gamma_for_mean_ratio"]


def gamma_for_mean_ratio(image: torch.Tensor, ratio: float, iterations: int = 60) -> float:
    """The ``gamma`` with ``mean(image ** gamma) == ratio * mean(image)`` for ``image`` in [0, 1], by bisection on
    ``log(gamma)`` in [-8, 8] (the mean of ``x ** gamma`` falls monotonically as ``gamma`` grows).

    Raises:
        ValueError: ``ratio`` not positive, or the image is black (no gamma changes its mean).
    """
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    values = image.double().clamp(0.0, 1.0)
    target = ratio * float(values.mean())
    if target == 0:
        raise ValueError("a black image has no mean grey to scale")
    low, high = -8.0, 8.0
    for _ in range(iterations):
        middle = (low + high) / 2
        if float(values.pow(math.exp(middle)).mean()) > target:
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)


class ScaleMeanByGamma(Transform):
    """``img ** gamma`` for an image in [0, 1], ``gamma`` chosen so the mean grey becomes ``ratio`` times its own
    (``ratio`` 0.5: half as bright on average). A black image is returned unchanged."""

    backend = [TransformBackends.TORCH]

    def __init__(self, ratio: float = 0.5) -> None:
        if ratio <= 0:
            raise ValueError(f"ratio must be positive, got {ratio}")
        self.ratio = ratio

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        image = convert_to_tensor(img, track_meta=False)
        if not bool((image > 0).any()):
            return img
        shifted = image.clamp(0.0, 1.0).pow(gamma_for_mean_ratio(image, self.ratio))
        return convert_to_dst_type(shifted, img)[0]


class ScaleMeanByGammad(MapTransform):
    """Dictionary form of :class:`ScaleMeanByGamma`."""

    backend = ScaleMeanByGamma.backend

    def __init__(self, keys: KeysCollection, ratio: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.shift = ScaleMeanByGamma(ratio)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.shift(d[key])
        return d
