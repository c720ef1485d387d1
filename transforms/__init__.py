"""Custom MONAI transforms for multimodal image fusion (installed as ``mmif_monai.transforms``).

- :mod:`.color`: RGB <-> NTSC YIQ, and splitting/merging the luminance channel that fusion works on.
- :mod:`.intensity`: modality-aware normalisation to [0, 1] (CT window, MR percentiles, PET/SPECT SUV or
  percentiles, 8-bit /255), and the body-weight SUV factor from DICOM metadata.
- :mod:`.loading`: loading PNG/TIFF/JPEG, NIfTI, DICOM and ITK images as channel-first ``MetaTensor`` objects.
- :mod:`.meta`: the metadata keys and modality names the others share.
- :mod:`.sampling`: a foreground weight map for drawing training crops where the anatomy is.
- :mod:`.shift`: another scanner's intensities (a gamma that scales an image's mean grey).

Array transforms take one channel-first image; the ``...d`` classes are their dictionary-based wrappers.
"""

from .color import (
    RGB_FROM_YIQ,
    YIQ_FROM_RGB,
    RGBToYIQ,
    RGBToYIQd,
    ToLuminance,
    ToLuminanced,
    YIQToRGB,
    YIQToRGBd,
    merge_luminance,
    rgb_to_yiq,
    split_luminance,
    yiq_to_rgb,
)
from .intensity import (
    DEFAULT_CT_WINDOW,
    DEFAULT_PERCENTILES,
    DEFAULT_SUV_RANGE,
    ModalityNormalize,
    ModalityNormalized,
    suv_scale_factor,
)
from .loading import (
    CheckedITKReader,
    CheckedNibabelReader,
    ImageLoadError,
    LoadModality,
    LoadModalityd,
    SliceReader,
    has_dicom_marker,
    is_colour,
    reader_for_path,
)
from .meta import (
    FUNCTIONAL_MODALITIES,
    MODALITY_ALIASES,
    MODALITY_KEY,
    SOURCE_DTYPE_KEY,
    canonical_modality,
    check_anatomical_modality,
    modality_from_meta,
    shown_inverted,
)
from .sampling import ForegroundWeight, ForegroundWeightd
from .shift import ScaleMeanByGamma, ScaleMeanByGammad, gamma_for_mean_ratio

__all__ = [
    # color
    "YIQ_FROM_RGB",
    "RGB_FROM_YIQ",
    "rgb_to_yiq",
    "yiq_to_rgb",
    "split_luminance",
    "merge_luminance",
    "RGBToYIQ",
    "YIQToRGB",
    "RGBToYIQd",
    "YIQToRGBd",
    "ToLuminance",
    "ToLuminanced",
    # intensity
    "DEFAULT_CT_WINDOW",
    "DEFAULT_PERCENTILES",
    "DEFAULT_SUV_RANGE",
    "suv_scale_factor",
    "ModalityNormalize",
    "ModalityNormalized",
    # loading
    "ImageLoadError",
    "SliceReader",
    "CheckedNibabelReader",
    "CheckedITKReader",
    "reader_for_path",
    "has_dicom_marker",
    "is_colour",
    "LoadModality",
    "LoadModalityd",
    # meta
    "MODALITY_KEY",
    "SOURCE_DTYPE_KEY",
    "MODALITY_ALIASES",
    "FUNCTIONAL_MODALITIES",
    "canonical_modality",
    "check_anatomical_modality",
    "modality_from_meta",
    "shown_inverted",
    # sampling
    "ForegroundWeight",
    "ForegroundWeightd",
    # shift
    "ScaleMeanByGamma",
    "ScaleMeanByGammad",
    "gamma_for_mean_ratio",
]
