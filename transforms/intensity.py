"""Modality-aware intensity normalisation to [0, 1].

Every rule is an affine map ``(x - a_min) / (a_max - a_min)`` followed by clipping to [0, 1]; the rules differ only
in how ``(a_min, a_max)`` is chosen, in the image's original units:

================  ================================================================================================
rule              ``(a_min, a_max)``
================  ================================================================================================
``8bit``          ``(0, 255)``: 8-bit images (``uint8`` data, ``meta["source_dtype"] == "uint8"``, or modality
                  ``PNG8``) such as the AANLIB PNG slices are display grey levels already windowed by whoever
                  exported them; 8 bits cannot hold Hounsfield units or activity concentrations, so this rule
                  takes precedence over the modality.
``ct_window``     a fixed Hounsfield-unit window, default ``(-100, 1500)``. For MRI-CT fusion the CT contributes
                  bone, the MRI soft tissue, so the window must not saturate bone: the upper end is that of the
                  common CT bone window (width 2000 HU, level 500 HU, i.e. -500..1500 HU; presets vary between
                  sites, this one is listed e.g. in https://slidepub.com/slideshow/understanding-ct-scan-windowing),
                  which keeps dense cortical bone (roughly +1000 HU and above) graded, not clipped. The lower
                  end is raised from -500 to -100 HU so that air and fat (about -1000 and -100 HU) map to 0,
                  giving the black background of the AANLIB CT slices, while soft tissue (about 20..80 HU) stays
                  a dim, non-zero grey.
``percentile``    robust percentiles of the image, default 0.5 and 99.5 (MR always; PET/SPECT when no SUV is
                  possible): MR intensities have no absolute unit, and the extreme 0.5 % tails hold noise and
                  flow or susceptibility outliers that a min-max scaling would let dominate.
``suv``           PET/SPECT with the DICOM fields for body-weight SUV (see :func:`suv_scale_factor`): a fixed SUV
                  range, default ``(0, 10)``, so that intensities are comparable between scans. The range is a
                  display convention, not a standard: brain FDG cortex can approach or exceed SUV 10; widen it
                  there.
================  ================================================================================================

A DICOM image whose PhotometricInterpretation is ``MONOCHROME1`` (its lowest value shown white) comes out inverted,
``1 - x``, as a viewer shows it after its window. A constant image (``a_min == a_max``, or a window no wider than
float resolution) maps to zeros, never NaN.
NaN or Inf in the input raises ``ValueError``: they would otherwise spread through the percentiles and the
fusion network silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, cast

import torch
from monai.config import DtypeLike, KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.data.meta_tensor import MetaTensor
from monai.transforms.inverse import InvertibleTransform
from monai.transforms.transform import MapTransform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import ImageMetaKey, TraceKeys, TransformBackends, convert_to_dst_type, convert_to_tensor
from monai.utils.misc import ensure_tuple_rep
from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from .meta import FUNCTIONAL_MODALITIES, SOURCE_DTYPE_KEY, canonical_modality, modality_from_meta, shown_inverted

__all__ = [
    "DEFAULT_CT_WINDOW",
    "DEFAULT_PERCENTILES",
    "DEFAULT_SUV_RANGE",
    "suv_scale_factor",
    "ModalityNormalize",
    "ModalityNormalized",
]

#: Hounsfield-unit window for CT (see the module docstring for the choice).
DEFAULT_CT_WINDOW: tuple[float, float] = (-100.0, 1500.0)
#: Lower and upper percentiles (0-100) for MR and for PET/SPECT without SUV.
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)
#: Body-weight SUV range mapped to [0, 1] for PET/SPECT with SUV metadata.
DEFAULT_SUV_RANGE: tuple[float, float] = (0.0, 10.0)

# DICOM keywords suv_scale_factor reads; a MONAI metadata dict in the DICOM JSON model (PydicomReader with
# prune_metadata=False) is keyed by their 8-hex-digit tags.
_SUV_KEYWORDS = (
    "Units",
    "DecayCorrection",
    "CorrectedImage",
    "RadiopharmaceuticalInformationSequence",
    "PatientWeight",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
)
_SUV_JSON_TAGS = {keyword: f"{tag_for_keyword(keyword):08X}" for keyword in _SUV_KEYWORDS}
# DICOM TM value: HH[MM[SS[.F{1,6}]]] (PS3.5 Table 6.2-1); the colon-separated ACR-NEMA form is also accepted.
_TM_PATTERN = re.compile(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?")
_SECONDS_PER_DAY = 86400.0


def _positive(value: Any) -> float | None:
    """``value`` as a finite positive float, or None (missing, empty, zero or not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _tm_seconds(value: Any) -> float | None:
    """Seconds since midnight of a DICOM TM value, or None when missing or malformed."""
    if value is None:
        return None
    match = _TM_PATTERN.fullmatch(str(value).strip().replace(":", ""))
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    return int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0) + float(fraction or 0.0)


def _suv_dataset(meta: Dataset | Mapping[Any, Any]) -> Dataset:
    """The SUV-relevant attributes of ``meta`` as a pydicom ``Dataset``."""
    if isinstance(meta, Dataset):
        return meta
    # only the needed tags: the rest of a full header may hold values from_json cannot parse
    return Dataset.from_json({tag: meta[tag] for tag in _SUV_JSON_TAGS.values() if isinstance(meta.get(tag), Mapping)})


def suv_scale_factor(meta: Dataset | Mapping[Any, Any]) -> float | None:
    """
    Factor converting PET voxel values in Bq/mL to body-weight SUV (``SUVbw = value * factor``), or None.

    Follows the QIBA vendor-neutral pseudo-code for SUV (QIBA FDG-PET/CT technical committee, "Standardized Uptake
    Value (SUV)", https://qibawiki.rsna.org/index.php/Standardized_Uptake_Value_(SUV)) for the ``BQML`` case::

        decay_time   = scan_time - RadiopharmaceuticalStartTime          # seconds
        decayed_dose = RadionuclideTotalDose * 2 ** (-decay_time / RadionuclideHalfLife)
        factor       = PatientWeight [kg] * 1000 / decayed_dose          # g/Bq, so SUV is in g/mL

    Attributes (DICOM PS3.3 C.8.9.1 PET Series module, C.8.9.2 PET Isotope module, C.7.2.2 Patient Study module):
    ``Units`` (0054,1001) must be ``BQML``; ``DecayCorrection`` (0054,1102) must be ``START`` (images decay-corrected
    to the series start) and ``CorrectedImage`` (0028,0051) must list ``ATTN`` and ``DECY``; dose (0018,1074),
    half-life (0018,1075) and start time (0018,1072) come from the first item of
    ``RadiopharmaceuticalInformationSequence`` (0054,0016); ``PatientWeight`` (0010,1030) in kg. The scan time is
    ``SeriesTime`` (0008,0031), unless the series date/time is after ``AcquisitionDate``/``AcquisitionTime``
    (a post-processed series, whose scan start only vendor-private tags hold): then None. As in the pseudo-code the
    injection is assumed to be on the series date; a start time later than the scan time is taken as the previous
    day (injection before midnight).

    Args:
        meta: a pydicom ``Dataset``, or a MONAI metadata dict in the DICOM JSON model (keys ``"00541001"`` ...),
            as ``PydicomReader(prune_metadata=False)`` / :class:`~mmif_monai.transforms.loading.LoadModality` produce.

    Returns:
        the scale factor, or None when a needed attribute is missing, empty or zero, or the units/corrections are
        not the ones above (the caller then falls back to percentile scaling).
    """
    ds = _suv_dataset(meta)
    if str(ds.get("Units", "")).strip().upper() != "BQML":
        return None
    if str(ds.get("DecayCorrection", "")).strip().upper() != "START":
        return None
    corrected = ds.get("CorrectedImage")
    corrected_set = {str(v).strip().upper() for v in ([corrected] if isinstance(corrected, str) else corrected or [])}
    if not {"ATTN", "DECY"} <= corrected_set:
        return None
    sequence = ds.get("RadiopharmaceuticalInformationSequence")
    if not sequence:
        return None
    isotope = sequence[0]
    dose = _positive(isotope.get("RadionuclideTotalDose"))
    half_life = _positive(isotope.get("RadionuclideHalfLife"))
    start = _tm_seconds(isotope.get("RadiopharmaceuticalStartTime"))
    weight = _positive(ds.get("PatientWeight"))
    scan = _tm_seconds(ds.get("SeriesTime"))
    if dose is None or half_life is None or start is None or weight is None or scan is None:
        return None
    acquisition = _tm_seconds(ds.get("AcquisitionTime"))
    series_date, acquisition_date = str(ds.get("SeriesDate") or ""), str(ds.get("AcquisitionDate") or "")
    # YYYYMMDD strings order chronologically; compare dates only when both are present
    if acquisition is not None and bool(series_date) == bool(acquisition_date):
        if (series_date, scan) > (acquisition_date, acquisition):
            return None
    decay_time = (scan - start) % _SECONDS_PER_DAY
    decayed_dose = dose * 2.0 ** (-decay_time / half_life)
    return weight * 1000.0 / decayed_dose


def _holds_contrast(a_min: float, a_max: float, dtype: torch.dtype) -> bool:
    """Whether the window [a_min, a_max] is wider than float resolution. A window of a few units in the last place
    of its ends is rounding noise, and one below the smallest normal float32 (denormals, 1e-38 and less) is no
    contrast any scanner or file stores: stretching either to [0, 1] would make the result depend on the unit (a
    shift of the values erases it), so such an image counts as constant."""
    resolution = 4 * torch.finfo(dtype).eps * max(abs(a_min), abs(a_max))
    return a_max - a_min > max(resolution, torch.finfo(torch.float32).tiny)


class ModalityNormalize(InvertibleTransform):
    """
    Normalise a channel-first image to [0, 1] with a rule chosen by its modality (see the module docstring).

    The modality is, in order: the ``modality`` argument of ``__call__``, the one given here, or the image's
    metadata (``meta["modality"]``, ``"Modality"``, the ITK tag ``"0008|0060"`` or the DICOM JSON ``"00080060"``).
    Names are DICOM codes or aliases: ``CT``; ``MR``/``MRI``; ``PT``/``PET``; ``NM``/``SPECT``; ``PNG8``.
    8-bit data always uses ``/255`` whatever the modality.

    A ``MONOCHROME1`` image (by its DICOM metadata) is inverted after the rule, ``1 - x``: low values white.

    The map is invertible on the unclipped range: ``inverse`` applies ``x * (a_max - a_min) + a_min`` with the
    ``a_min``/``a_max`` stored at call time (for percentile rules, the computed percentiles; for SUV, the SUV range
    divided by the scale factor); clipped values come back as the window ends, and a constant image as its constant.

    Args:
        modality: modality name, or None to read it from the metadata.
        ct_window: (lower, upper) Hounsfield units mapped to (0, 1) for CT.
        percentiles: (lower, upper) percentiles in [0, 100] mapped to (0, 1) for MR, and PET/SPECT without SUV.
        suv_range: (lower, upper) body-weight SUV mapped to (0, 1) for PET/SPECT whose metadata allows SUV
            (:func:`suv_scale_factor`); None to always use percentiles.
        dtype: output data type; None keeps float64 input as float64, anything else becomes float32.

    Raises:
        ValueError: at call time, if the image holds NaN/Inf, or its modality cannot be determined.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        modality: str | None = None,
        ct_window: Sequence[float] = DEFAULT_CT_WINDOW,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        suv_range: Sequence[float] | None = DEFAULT_SUV_RANGE,
        dtype: DtypeLike | torch.dtype = torch.float32,
    ) -> None:
        self.modality = None if modality is None else canonical_modality(modality)
        self.ct_window = self._ordered_pair(ct_window, "ct_window")
        self.percentiles = self._ordered_pair(percentiles, "percentiles")
        if self.percentiles[0] < 0 or self.percentiles[1] > 100:
            raise ValueError(f"percentiles must lie in [0, 100], got {percentiles}")
        self.suv_range = None if suv_range is None else self._ordered_pair(suv_range, "suv_range")
        self.dtype = dtype

    @staticmethod
    def _ordered_pair(pair: Sequence[float], name: str) -> tuple[float, float]:
        low, high = (float(v) for v in pair)
        if not low < high:
            raise ValueError(f"{name} must be (lower, upper) with lower < upper, got {tuple(pair)}")
        return low, high

    def _intensity_range(
        self, img: torch.Tensor, meta: Mapping[Any, Any], modality: str | None, eight_bit: bool
    ) -> tuple[str, float, float]:
        """(rule name, a_min, a_max) for the float image ``img``; ``eight_bit``: the data is 8-bit display data."""
        if eight_bit:
            return "8bit", 0.0, 255.0
        name = modality or self.modality or modality_from_meta(meta)
        if name is None:
            raise ValueError(
                f"{meta.get(ImageMetaKey.FILENAME_OR_OBJ, 'image')}: cannot determine the modality; pass modality= "
                "or set meta['modality']"
            )
        code = canonical_modality(name)
        if code == "PNG8":
            return "8bit", 0.0, 255.0
        if code == "CT":
            return "ct_window", *self.ct_window
        if code in FUNCTIONAL_MODALITIES and self.suv_range is not None:
            factor = suv_scale_factor(meta)
            if factor is not None:
                return "suv", self.suv_range[0] / factor, self.suv_range[1] / factor
        low, high = cast(torch.Tensor, percentile(img, list(self.percentiles))).tolist()
        return "percentile", float(low), float(high)

    def __call__(self, img: NdarrayOrTensor, modality: str | None = None) -> torch.Tensor:
        """
        Args:
            img: channel-first image, (C, spatial...).
            modality: overrides the modality given at construction and in the metadata, for this call.
        """
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        meta = img_t.meta if isinstance(img_t, MetaTensor) else {}
        data = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        data = data.to(torch.float64 if img_t.dtype == torch.float64 else torch.float32)
        finite = torch.isfinite(data)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(data).sum())
            raise ValueError(
                f"{meta.get(ImageMetaKey.FILENAME_OR_OBJ, 'image')}: cannot normalise, image contains "
                f"{n_nan} NaN and {int((~finite).sum()) - n_nan} Inf values"
            )
        eight_bit = img_t.dtype == torch.uint8 or meta.get(SOURCE_DTYPE_KEY) == "uint8"
        rule, a_min, a_max = self._intensity_range(data, meta, modality, eight_bit)
        if _holds_contrast(a_min, a_max, data.dtype):
            out = ((data - a_min) / (a_max - a_min)).clamp(0.0, 1.0)
        else:  # constant image: nothing to stretch, and dividing by zero would give NaN
            out = torch.zeros_like(data)
        inverted = shown_inverted(meta)
        if inverted:  # MONOCHROME1: what a viewer shows, low values white, is what is fused
            out = 1.0 - out
        out = convert_to_dst_type(out, dst=img_t, dtype=self.dtype or out.dtype)[0]
        self.push_transform(out, extra_info={"rule": rule, "a_min": a_min, "a_max": a_max, "inverted": inverted})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        info = self.pop_transform(data)[TraceKeys.EXTRA_INFO]
        a_min, a_max = float(info["a_min"]), float(info["a_max"])
        if info.get("inverted"):
            data = 1.0 - data
        return data * (a_max - a_min) + a_min


class ModalityNormalized(MapTransform, InvertibleTransform):
    """
    Dictionary-based wrapper of :py:class:`ModalityNormalize`.

    Args:
        keys: keys of the corresponding items to be transformed.
            See also: monai.transforms.MapTransform
        modality: one modality for all keys, or one per key (None entries read the metadata).
        ct_window: see :py:class:`ModalityNormalize`.
        percentiles: see :py:class:`ModalityNormalize`.
        suv_range: see :py:class:`ModalityNormalize`.
        dtype: see :py:class:`ModalityNormalize`.
        allow_missing_keys: don't raise exception if key is missing.
    """

    backend = ModalityNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        modality: Sequence[str | None] | str | None = None,
        ct_window: Sequence[float] = DEFAULT_CT_WINDOW,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        suv_range: Sequence[float] | None = DEFAULT_SUV_RANGE,
        dtype: DtypeLike | torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.modality = tuple(
            None if m is None else canonical_modality(m) for m in ensure_tuple_rep(modality, len(self.keys))
        )
        self.normalizer = ModalityNormalize(
            ct_window=ct_window, percentiles=percentiles, suv_range=suv_range, dtype=dtype
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, torch.Tensor]:
        d: dict[Hashable, Any] = dict(data)
        for key, modality in self.key_iterator(d, self.modality):
            d[key] = self.normalizer(d[key], modality=modality)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer.inverse(d[key])
        return d
