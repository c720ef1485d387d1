"""Keeping a pseudo-colour functional pixel on its step of the colour scale: a limit on how far fusion may move
its luminance.

PET/SPECT colour encodes uptake, and the colour's lightness is part of that code: fusing the functional
luminance Y with a bright MRI lightens a dark-blue (low-uptake) pixel into pale cyan, a step higher on the scale.
:class:`LuminanceLimit` bounds the move of the fused Y away from the functional Y wherever the functional image
is coloured, in two bands:

- the *level* (the move smoothed by a Gaussian of ``sigma`` pixels: the colour a reader sees a region in) may move
  by at most ``level``;
- the *detail* (the rest: the anatomy's edges drawn across the region) by at most ``detail``.

Both are soft limits, ``limit * tanh(move / limit)``: small moves pass unchanged, large ones saturate, and the
order of grey levels is kept, so an edge is never reversed or cut into a double contour. The limit applies in
full from a chroma ``|(I, Q)|`` of ``full_chroma`` up and fades linearly to none on grey pixels, where the
functional image encodes no colour and the anatomy is shown as the fusion rule gives it. Measured effect on
colour (CIEDE2000 per colour-scale step) and anatomy: ``docs/colour.md``; the choice: ``docs/method.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.layers import gaussian_1d, separable_filtering

__all__ = ["LuminanceLimit", "COLOUR_FIDELITY"]


@dataclass(frozen=True)
class LuminanceLimit:
    """How far fusion may move a coloured functional pixel's luminance (Y of YIQ, in [0, 1]).

    Args:
        level: the largest move of the smoothed luminance, the colour of a region.
        detail: the largest move of the detail, the anatomy drawn inside a region.
        sigma: the Gaussian (pixels) that separates level from detail.
        full_chroma: the YIQ chroma ``sqrt(I^2 + Q^2)`` from which the limit applies in full.
    """

    level: float = 0.02
    detail: float = 0.12
    sigma: float = 2.0
    full_chroma: float = 0.05

    def __post_init__(self) -> None:
        for name in ("level", "detail", "sigma", "full_chroma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LuminanceLimit.{name} must be positive, got {getattr(self, name)}")

    @property
    def label(self) -> str:
        """A short name for folders and tables, e.g. ``limit-0.02-0.12-s2``."""
        return f"limit-{self.level:g}-{self.detail:g}-s{self.sigma:g}"

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        kernel = gaussian_1d(torch.tensor(self.sigma), truncated=3.0, normalize=True).to(x)
        return separable_filtering(x, [kernel, kernel], mode="replicate")

    def __call__(
        self, fused_luminance: torch.Tensor, luminance: torch.Tensor, chrominance: torch.Tensor
    ) -> torch.Tensor:
        """The fused luminance (N, 1, H, W), limited around the functional ``luminance`` (N, 1, H, W) where its
        ``chrominance`` (N, 2, H, W: I, Q) is coloured."""
        move = fused_luminance - luminance
        level = self._smooth(move)
        limited = (
            luminance
            + self.level * torch.tanh(level / self.level)
            + self.detail * torch.tanh((move - level) / self.detail)
        )
        weight = (torch.linalg.vector_norm(chrominance, dim=1, keepdim=True) / self.full_chroma).clamp(max=1.0)
        return torch.lerp(fused_luminance, limited, weight)


#: the setting ``mmif fuse --colour-fidelity`` uses: within the bound of docs/colour.md for MMIF-Net and every
#: classical rule on the validation split, with the most anatomy of the settings measured there
COLOUR_FIDELITY = LuminanceLimit()
