"""Metadata keys shared by the loading and normalisation transforms, and modality name handling.

:class:`~mmif_monai.transforms.loading.LoadModality` writes these keys into a ``MetaTensor``'s ``meta`` and
:class:`~mmif_monai.transforms.intensity.ModalityNormalize` reads them, so both sides use the constants here
rather than spelling the strings twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "MODALITY_KEY",
    "SOURCE_DTYPE_KEY",
    "MODALITY_ALIASES",
    "FUNCTIONAL_MODALITIES",
    "canonical_modality",
    "modality_from_meta",
    "shown_inverted",
    "check_anatomical_modality",
]

#: meta key holding the modality name (a DICOM code such as ``"CT"``, or an alias from ``MODALITY_ALIASES``).
MODALITY_KEY = "modality"

#: meta key holding the numpy dtype name of the array as the file stored it (e.g. ``"uint8"``), recorded
#: before the loader casts to float so that normalisation can still recognise 8-bit display images.
SOURCE_DTYPE_KEY = "source_dtype"

#: Accepted modality names (upper case) -> canonical name. The canonical names are the DICOM Modality (0008,0060)
#: defined terms (DICOM PS3.3 C.7.3.1.1.1: CT, MR, PT = PET, NM = nuclear medicine incl. SPECT) plus ``PNG8``
#: for 8-bit display images; the aliases are the folder names of the AANLIB layout (``MRI``, ``PET``, ``SPECT``).
MODALITY_ALIASES: dict[str, str] = {
    "CT": "CT",
    "MR": "MR",
    "MRI": "MR",
    "PT": "PT",
    "PET": "PT",
    "NM": "NM",
    "SPECT": "NM",
    "PNG8": "PNG8",
}

#: the canonical names of functional imaging (PET, nuclear medicine incl. SPECT): never the anatomical side of a
#: pair, shown in colour, and normalised by SUV where the header allows it
FUNCTIONAL_MODALITIES = ("PT", "NM")

# Where a modality may sit in metadata: our own key, a keyword-style key, the ITK/GDCM tag key
# ("group|element") and the DICOM JSON model key PydicomReader uses ("GGGGEEEE" -> {"vr", "Value"}).
_META_MODALITY_KEYS = (MODALITY_KEY, "Modality", "0008|0060", "00080060")
# the same places for PhotometricInterpretation (0028,0004)
_META_PHOTOMETRIC_KEYS = ("PhotometricInterpretation", "0028|0004", "00280004")


def canonical_modality(name: str) -> str:
    """Map a modality name or alias (case-insensitive) to its canonical DICOM code.

    Raises:
        ValueError: when the name is not one of ``MODALITY_ALIASES``.
    """
    key = str(name).strip().upper()
    if key not in MODALITY_ALIASES:
        raise ValueError(f"unknown modality {name!r}; expected one of {sorted(MODALITY_ALIASES)}")
    return MODALITY_ALIASES[key]


def _meta_value(meta: Mapping[Any, Any], keys: tuple[str, ...]) -> str | None:
    """The first non-empty value in ``meta`` under one of ``keys``, stripped; a DICOM JSON entry gives its first."""
    for key in keys:
        value = meta.get(key)
        if isinstance(value, Mapping):  # DICOM JSON model: the value list sits under "Value"
            value = (value.get("Value") or [None])[0]
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def modality_from_meta(meta: Mapping[Any, Any]) -> str | None:
    """The modality recorded in ``meta`` (as stored, not canonicalised), or None when there is none.

    Looks, in order, at ``meta["modality"]``, ``meta["Modality"]``, the ITK tag key ``"0008|0060"`` and the
    DICOM JSON entry ``"00080060"`` (``{"vr": "CS", "Value": ["CT"]}``) that ``PydicomReader`` produces.
    """
    return _meta_value(meta, _META_MODALITY_KEYS)


def shown_inverted(meta: Mapping[Any, Any]) -> bool:
    """Whether ``meta`` records a DICOM PhotometricInterpretation of ``MONOCHROME1``: the lowest value is meant to
    be shown white, so a viewer shows the image inverted (DICOM PS3.3 C.7.6.3.1.2)."""
    return _meta_value(meta, _META_PHOTOMETRIC_KEYS) == "MONOCHROME1"


def check_anatomical_modality(meta: Mapping[Any, Any], name: object) -> None:
    """Refuse an image given as the anatomical source whose header records a functional modality (PET, SPECT):
    the two inputs are most likely swapped. An unrecorded or unknown modality passes.

    Raises:
        ValueError: naming ``name`` (the file or series) and the modality its header records.
    """
    recorded = modality_from_meta(meta)
    if recorded is not None and MODALITY_ALIASES.get(str(recorded).strip().upper()) in FUNCTIONAL_MODALITIES:
        raise ValueError(
            f"{name}: the anatomical image is {recorded} (functional imaging, not anatomical) by its header; "
            "expected CT or MR. Are --anatomical and --functional swapped?"
        )
