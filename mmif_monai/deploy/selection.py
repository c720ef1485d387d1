"""Which two series of a DICOM study the app fuses, and the study checks that come first.

The rules are MONAI Deploy's series-selection JSON (``DICOMSeriesSelectorOperator``: ``{"selections": [{"name":
..., "conditions": {...}}]}``) with two selection names, ``anatomical`` and ``functional``. A name may appear in
several selections: they are tried in file order, so the order is the preference (the default rules,
``series_rules.json`` beside this module, prefer CT over MR as anatomical and PT/NM over a second MR as
functional). Within one selection, series are taken in SeriesNumber order. The functional series is the first
functional candidate that is not the anatomical series, which is how two MR series of one study pair up.

This module works on the SDK's domain objects (``DICOMStudy``, ``DICOMSeries``) but does not import the SDK, so
it can be read and tested without Holoscan. ``mmif fuse`` chooses the series of a study folder by the same rules
without the SDK (:func:`selection_matches`, :func:`series_matches`; :func:`mmif_monai.io.volumes.select_series`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ANATOMICAL",
    "FUNCTIONAL",
    "ROLES",
    "DEFAULT_RULES_PATH",
    "load_rules",
    "describe_series",
    "series_order",
    "check_single_study",
    "conditions_text",
    "choose_pair",
    "series_matches",
    "selection_matches",
    "one_folder",
    "series_folder",
]

ANATOMICAL, FUNCTIONAL = "anatomical", "functional"
ROLES = (ANATOMICAL, FUNCTIONAL)
DEFAULT_RULES_PATH = Path(__file__).with_name("series_rules.json")

Series = TypeVar("Series")


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


def conditions_text(rules: Mapping[str, Any], role: str) -> str:
    """``role``'s selections in ``rules`` for messages: ``(Modality '(?i)^CT$') or (Modality '(?i)^MR$')``."""
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
                f"{folder}: no {role} series{other}: none matches {conditions_text(rules, role)}; "
                f"the study holds: {_listing([study]) or 'no image series'}"
            )
    return anatomical, functional


def series_matches(conditions: Mapping[str, Any], header) -> bool:
    """Whether a series whose first image's ``header`` (``header.get(keyword)``, e.g. a pydicom ``Dataset``) meets
    one selection's ``conditions``, as the SDK's ``DICOMSeriesSelectorOperator`` matches text and numbers: a text
    condition matches a value equal to it without regard to case, or one that its regular expression finds
    (``re.search``, case-insensitive); a number matches an equal value; an empty condition matches anything; a
    missing attribute matches nothing.

    Raises:
        ValueError: a condition of another kind (a list: the SDK's ranges, relations and sets), which only the
            Deploy app's selector matches.
    """
    for keyword, wanted in conditions.items():
        if wanted is None or wanted == "":
            continue
        value = header.get(keyword)
        if value is None or value == "":
            return False
        if isinstance(wanted, str):
            text = str(value)
            if text.casefold() != wanted.casefold() and not re.search(wanted, text, re.IGNORECASE):
                return False
        elif isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
            try:
                if float(value) != float(wanted):
                    return False
            except (TypeError, ValueError):
                return False
        else:
            raise ValueError(
                f"series rule {keyword}: {wanted!r}: only text and number conditions are matched outside the Deploy app"
            )
    return True


def selection_matches(
    series: Sequence[Series], role: str, rules: Mapping[str, Any], header: Callable[[Series], Any]
) -> list[list[Series]]:
    """For each of ``role``'s selections in ``rules``, in file order (the order of preference), the ``series`` it
    matches (:func:`series_matches` on ``header(series)``)."""
    return [
        [s for s in series if series_matches(selection["conditions"], header(s))]
        for selection in rules["selections"]
        if selection["name"] == role
    ]


def one_folder(files: Sequence[str | Path], label: str, folder: str | Path) -> Path:
    """The one folder that holds every one of a series' ``files`` (the volume loader reads a series from one
    folder); ``label`` names the series in the message.

    Raises:
        ValueError: naming ``folder``: the files lie in several folders.
    """
    parents = sorted({Path(path).parent for path in files})
    if len(parents) != 1:
        raise ValueError(
            f"{folder}: the files of series {label} lie in {len(parents)} folders "
            f"({', '.join(map(str, parents[:3]))}...); keep each series in one folder"
        )
    return parents[0]


def series_folder(series, folder: str | Path) -> Path:
    """The one folder that holds every file of ``series`` (an SDK ``DICOMSeries``): :func:`one_folder`."""
    files = [instance.get_native_sop_instance().filename for instance in series.get_sop_instances()]
    return one_folder(files, describe_series(series), folder)
