"""Which two series of a DICOM study the app fuses, and the study checks that come first.

The rules are MONAI Deploy's series-selection JSON (``DICOMSeriesSelectorOperator``: ``{"selections": [{"name":
..., "conditions": {...}}]}``) with two selection names, ``anatomical`` and ``functional``. A name may appear in
several selections: they are tried in file order, so the order is the preference (the default rules,
``series_rules.json`` beside this module, prefer CT over MR as anatomical and PT/NM over a second MR as
functional). Within one selection, series are taken in SeriesNumber order. The functional series is the first
functional candidate that is not the anatomical series, which is how two MR series of one study pair up.

This module works on the SDK's domain objects (``DICOMStudy``, ``DICOMSeries``) but does not import the SDK, so
it can be read and tested without Holoscan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ANATOMICAL",
    "FUNCTIONAL",
    "ROLES",
    "DEFAULT_RULES_PATH",
    "load_rules",
    "describe_series",
    "series_order",
    "check_single_study",
    "choose_pair",
    "series_folder",
]

ANATOMICAL, FUNCTIONAL = "anatomical", "functional"
ROLES = (ANATOMICAL, FUNCTIONAL)
DEFAULT_RULES_PATH = Path(__file__).with_name("series_rules.json")


def load_rules(path: str | Path | None = None) -> dict[str, Any]:
    """Read and check the selection rules at ``path`` (default :data:`DEFAULT_RULES_PATH`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming ``path``: not JSON, no ``selections`` list, a selection without ``conditions`` or
            with a name other than ``anatomical`` / ``functional``, or no selection for one of the two.
    """
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    selections = rules.get("selections") if isinstance(rules, dict) else None
    if not isinstance(selections, list) or not selections:
        raise ValueError(f'{path}: series rules need a non-empty "selections" list')
    for index, selection in enumerate(selections):
        name = selection.get("name") if isinstance(selection, dict) else None
        if name not in ROLES:
            raise ValueError(f'{path}: selection {index} is named {name!r}; names must be "anatomical" or "functional"')
        if not isinstance(selection.get("conditions"), dict) or not selection["conditions"]:
            raise ValueError(f'{path}: selection {index} ({name}) has no "conditions"')
    missing = [role for role in ROLES if not any(s["name"] == role for s in selections)]
    if missing:
        raise ValueError(f"{path}: no selection named {' or '.join(map(repr, missing))}")
    return rules


def describe_series(series) -> str:
    """``CT 'CT HEAD' (#2, 64 images)``: how series are named in messages."""
    return (
        f"{series.Modality or '?'} {series.SeriesDescription or ''!r} "
        f"(#{series.SeriesNumber if series.SeriesNumber is not None else '?'}, "
        f"{len(series.get_sop_instances())} images)"
    )


def series_order(series) -> tuple[float, str]:
    """Sort key: SeriesNumber (missing ones last), then SeriesInstanceUID for a stable order."""
    number = series.SeriesNumber
    return (float(number) if number is not None else float("inf"), str(series.SeriesInstanceUID))


def _listing(studies: Sequence) -> str:
    return "; ".join(describe_series(s) for study in studies for s in sorted(study.get_all_series(), key=series_order))


def check_single_study(studies: Sequence, folder: str | Path):
    """The one study in ``studies`` (as the SDK's ``DICOMDataLoaderOperator`` groups a folder).

    The fused series keeps its source's patient and study, so the input must be one patient's single study.

    Raises:
        ValueError: naming ``folder``: no study, images of several patients (each patient's series, numbered,
            not their PatientIDs), or several studies of one patient (with their StudyInstanceUIDs).
    """
    if not studies:
        raise ValueError(f"{folder}: no DICOM study found in this folder")
    patients: dict[str, dict[str, Any]] = {}  # PatientID -> {SeriesInstanceUID: series}
    for study in studies:
        for series in study.get_all_series():
            for instance in series.get_sop_instances():
                patient = str(instance.get_native_sop_instance().get("PatientID", ""))
                patients.setdefault(patient, {})[str(series.SeriesInstanceUID)] = series
    if len(patients) > 1:
        # each patient's series, never the PatientIDs themselves: identity stays out of printed output
        found = "; ".join(
            f"patient {number}: {', '.join(describe_series(s) for s in sorted(series.values(), key=series_order))}"
            for number, (_, series) in enumerate(sorted(patients.items()), start=1)
        )
        raise ValueError(
            f"{folder}: holds images of {len(patients)} patients ({found}); give the folder of one patient's study"
        )
    if len(studies) > 1:
        uids = ", ".join(str(study.StudyInstanceUID) for study in studies)
        raise ValueError(f"{folder}: holds {len(studies)} studies ({uids}); give the folder of one study")
    return studies[0]


def _conditions_text(rules: Mapping[str, Any], role: str) -> str:
    return " or ".join(
        "(" + ", ".join(f"{key} {value!r}" for key, value in selection["conditions"].items()) + ")"
        for selection in rules["selections"]
        if selection["name"] == role
    )


def choose_pair(
    candidates: Mapping[str, Sequence], study, folder: str | Path, rules: Mapping[str, Any]
) -> tuple[Any, Any]:
    """The anatomical and functional series from the ``candidates`` each role's selections in ``rules`` matched
    (in preference order); the functional one must be another series than the anatomical one.

    Raises:
        ValueError: naming ``folder``: no series for a role, with that role's conditions and the series the
            study holds.
    """
    anatomical = next(iter(candidates.get(ANATOMICAL, ())), None)
    anatomical_uid = anatomical.SeriesInstanceUID if anatomical is not None else None
    functional = next((s for s in candidates.get(FUNCTIONAL, ()) if s.SeriesInstanceUID != anatomical_uid), None)
    for role, chosen in ((ANATOMICAL, anatomical), (FUNCTIONAL, functional)):
        if chosen is None:
            other = " other than the anatomical one" if role == FUNCTIONAL and candidates.get(FUNCTIONAL) else ""
            raise ValueError(
                f"{folder}: no {role} series{other}: none matches {_conditions_text(rules, role)}; "
                f"the study holds: {_listing([study]) or 'no image series'}"
            )
    return anatomical, functional


def series_folder(series, folder: str | Path) -> Path:
    """The one folder that holds every file of ``series`` (the volume loader reads a series from one folder).

    Raises:
        ValueError: naming ``folder``: the series' files lie in several folders.
    """
    instances = series.get_sop_instances()
    parents = sorted({Path(instance.get_native_sop_instance().filename).parent for instance in instances})
    if len(parents) != 1:
        raise ValueError(
            f"{folder}: the files of series {describe_series(series)} lie in {len(parents)} folders "
            f"({', '.join(map(str, parents[:3]))}...); keep each series in one folder"
        )
    return parents[0]
