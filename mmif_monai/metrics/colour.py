"""Colour fidelity of a fused pseudo-colour image: how far fusion moved each functional colour, per step of the
colour scale that encodes uptake.

Definitions (``docs/colour.md`` gives the reasons and the measured values):

- **Colour difference**: CIEDE2000, ``skimage.color.deltaE_ciede2000`` between ``skimage.color.rgb2lab`` of the
  fused and of the functional RGB (sRGB, D65).
- **Uptake region**: the functional pixels with CIELAB chroma ``C*ab = hypot(a*, b*)`` of at least
  :data:`UPTAKE_MIN_CHROMA`: the pixels the colour map paints in a colour rather than black or grey.
- **Colour scale** (:class:`ColourScale`): the colour map as a polyline through its knots in RGB, sampled at every
  8-bit level. A colour's *position* is the arc length, in ΔE00 summed along the scale from its low-uptake end,
  of the scale sample nearest to it in CIELAB.
- **Steps**: the scale cut into ``steps`` stretches of equal length (equal perceived change); a pixel belongs to
  the step its functional colour's position falls in.
- **Moved to another step**: the fused colour's position is more than half a step from the functional colour's,
  so it lies closer to the colour one step up or down the scale than to its own. Counting against a window centred
  on each pixel's own colour rather than fixed step borders keeps a pixel next to a border from counting as moved
  by an invisible shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy
from scipy.spatial import cKDTree
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

__all__ = [
    "UPTAKE_MIN_CHROMA",
    "ColourScale",
    "AANLIB_COLOUR_SCALES",
    "ColourShifts",
    "Fidelity",
    "ColourFidelity",
    "ColourBound",
    "COLOUR_BOUND",
    "to_lab",
    "uptake_mask",
    "colour_shifts",
]

#: C*ab from which a functional pixel is coloured: the AANLIB PET and SPECT maps reach it within their lowest eighth
UPTAKE_MIN_CHROMA = 10.0

RGB8 = tuple[int, int, int]


@dataclass(frozen=True)
class ColourScale:
    """A pseudo-colour map as an ordered polyline of 8-bit RGB ``knots``, low uptake first, cut into ``steps``."""

    name: str
    knots: tuple[RGB8, ...]
    steps: int = 8

    def __post_init__(self) -> None:
        if len(self.knots) < 2 or self.steps < 1:
            raise ValueError(f"{self.name}: a colour scale needs at least two knots and one step")

    @cached_property
    def _samples(self) -> tuple[np.ndarray, np.ndarray, cKDTree]:
        """The scale's Lab samples (one per 8-bit level along each segment), their positions and a search tree."""
        knots = np.asarray(self.knots, dtype=np.float64)
        segments = [
            np.linspace(start, end, max(1, int(np.abs(end - start).max())), endpoint=False)
            for start, end in zip(knots[:-1], knots[1:])
        ]
        lab = rgb2lab(np.concatenate([*segments, knots[-1:]]) / 255.0)
        positions = np.concatenate([[0.0], np.cumsum(deltaE_ciede2000(lab[:-1], lab[1:]))])
        return lab, positions, cKDTree(lab)

    @property
    def length(self) -> float:
        """The scale's length in ΔE00."""
        return float(self._samples[1][-1])

    @property
    def step_width(self) -> float:
        return self.length / self.steps

    def project(self, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions along the scale of (..., 3) Lab colours, and their ΔE00 to the scale sample they project on."""
        samples, positions, tree = self._samples
        _, nearest = tree.query(lab)
        return positions[nearest], deltaE_ciede2000(lab, samples[nearest])

    def step_of(self, positions: np.ndarray) -> np.ndarray:
        """The step (0 .. steps - 1) each position lies in."""
        return np.minimum((np.asarray(positions) / self.step_width).astype(np.int64), self.steps - 1)

    def step_colours(self) -> np.ndarray:
        """(steps, 3) 8-bit RGB: the scale's colour at the middle of each step."""
        samples, positions, _ = self._samples
        middles = (np.arange(self.steps) + 0.5) * self.step_width
        index = np.minimum(np.searchsorted(positions, middles), len(positions) - 1)
        return np.round(lab2rgb(samples[index]) * 255.0).astype(np.uint8)


#: The colour maps of the AANLIB copy's functional images, read off their palettes (128 PET and 156 SPECT colours
#: in all 269 / 287 slices): each is piecewise linear in RGB through these knots. docs/colour.md prints how far the
#: validation slices' colours lie from them.
AANLIB_COLOUR_SCALES: dict[str, ColourScale] = {
    "mri_pet": ColourScale(
        "PET: black, navy, blue, yellow, red, magenta",
        ((0, 0, 0), (0, 0, 127), (0, 85, 255), (255, 255, 0), (255, 0, 0), (255, 0, 255)),
    ),
    "mri_spect": ColourScale(
        "SPECT: black, dark teal, violet, rose, orange, pale pink",
        ((0, 0, 0), (41, 71, 73), (83, 0, 144), (190, 90, 121), (255, 114, 0), (255, 222, 255)),
    ),
}


def to_lab(rgb: NdarrayOrTensor) -> np.ndarray:
    """(H, W, 3) CIELAB of a channel-first (3, H, W) RGB image in [0, 1]."""
    image = convert_to_numpy(rgb, dtype=np.float64)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) RGB image, got shape {tuple(image.shape)}")
    return rgb2lab(np.moveaxis(image, 0, -1))


def uptake_mask(functional_lab: np.ndarray, min_chroma: float = UPTAKE_MIN_CHROMA) -> np.ndarray:
    """(H, W) bool: the pixels of an (H, W, 3) Lab functional image with chroma C*ab of at least ``min_chroma``."""
    return np.hypot(functional_lab[..., 1], functional_lab[..., 2]) >= min_chroma


@dataclass(frozen=True)
class ColourShifts:
    """The uptake pixels of one or more images: ΔE00 fused vs functional, the functional colour's step, and
    whether the fused colour moved to another step."""

    delta_e: np.ndarray
    step: np.ndarray
    moved: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[ColourShifts]) -> ColourShifts:
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("delta_e", "step", "moved")))


def colour_shifts(
    fused: NdarrayOrTensor,
    functional: NdarrayOrTensor,
    scale: ColourScale,
    min_chroma: float = UPTAKE_MIN_CHROMA,
) -> ColourShifts:
    """How far fusion moved the colour of every uptake pixel of ``functional``.

    Args:
        fused, functional: (3, H, W) RGB images in [0, 1] (numpy or torch).
        scale: the functional image's colour map.
        min_chroma: see :func:`uptake_mask`.
    """
    fused_lab, functional_lab = to_lab(fused), to_lab(functional)
    if fused_lab.shape != functional_lab.shape:
        raise ValueError(f"fused {fused_lab.shape[:2]} and functional {functional_lab.shape[:2]} differ in size")
    uptake = uptake_mask(functional_lab, min_chroma)
    fused_lab, functional_lab = fused_lab[uptake], functional_lab[uptake]
    own, _ = scale.project(functional_lab)
    landed, _ = scale.project(fused_lab)
    return ColourShifts(
        delta_e=deltaE_ciede2000(fused_lab, functional_lab),
        step=scale.step_of(own),
        moved=np.abs(landed - own) > scale.step_width / 2,
    )


@dataclass(frozen=True)
class Fidelity:
    """ΔE00 mean and 95th percentile over a set of pixels, and the fraction of them moved to another step."""

    pixels: int
    mean: float
    p95: float
    moved: float

    @classmethod
    def of(cls, delta_e: np.ndarray, moved: np.ndarray) -> Fidelity:
        if delta_e.size == 0:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(int(delta_e.size), float(delta_e.mean()), float(np.percentile(delta_e, 95)), float(moved.mean()))


@dataclass(frozen=True)
class ColourFidelity:
    """:class:`Fidelity` over all uptake pixels and per colour-scale step (``pixels == 0`` for an empty step)."""

    overall: Fidelity
    steps: tuple[Fidelity, ...]

    @classmethod
    def from_shifts(cls, shifts: ColourShifts, steps: int) -> ColourFidelity:
        per_step = tuple(
            Fidelity.of(shifts.delta_e[shifts.step == k], shifts.moved[shifts.step == k]) for k in range(steps)
        )
        return cls(Fidelity.of(shifts.delta_e, shifts.moved), per_step)

    @property
    def worst_step_mean(self) -> float:
        """The largest per-step mean ΔE00 among the steps with pixels."""
        return max((s.mean for s in self.steps if s.pixels), default=float("nan"))


@dataclass(frozen=True)
class ColourBound:
    """The colour a reader can trust: every step's mean ΔE00 at most ``step_mean``, and at most ``moved`` of the
    uptake pixels moved to another step (docs/colour.md says why these values)."""

    step_mean: float = 5.0
    moved: float = 0.05

    def met(self, fidelity: ColourFidelity) -> bool:
        return fidelity.worst_step_mean <= self.step_mean and fidelity.overall.moved <= self.moved


COLOUR_BOUND = ColourBound()
