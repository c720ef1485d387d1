"""Listing and splitting a folder laid out like the AANLIB copy in ``shared/data/aanlib``.

Layout: one subfolder per pair type (``mri_ct``, ``mri_pet``, ``mri_spect``), each with one subfolder per
modality (``MRI`` + ``CT`` / ``PET`` / ``SPECT``); a pair is the same file name in both modality folders.

File names are numbers whose thousands prefix names an atlas case (``25015.png`` is slice 15 of case 25);
neighbouring slices of one case are strongly correlated, so the split holds out whole cases. The same case
number held out in every pair type keeps a subject's MRI out of training when it appears in several types.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PAIR_TYPES",
    "DEFAULT_VALIDATION_CASES",
    "FusionPair",
    "case_of",
    "list_pairs",
    "split_pairs",
]

#: pair type -> (anatomical modality folder, second modality folder)
PAIR_TYPES: dict[str, tuple[str, str]] = {
    "mri_ct": ("MRI", "CT"),
    "mri_pet": ("MRI", "PET"),
    "mri_spect": ("MRI", "SPECT"),
}

#: Atlas cases held out for validation (see docs/method.md, "Data split"): 26/161 MRI-CT,
#: 82/269 MRI-PET and 62/287 MRI-SPECT pairs.
DEFAULT_VALIDATION_CASES: tuple[int, ...] = (10, 21, 22, 30, 37)


@dataclass(frozen=True)
class FusionPair:
    """One co-registered slice pair."""

    pair_type: str
    name: str
    anatomical: Path
    functional: Path

    @property
    def case(self) -> int:
        return case_of(self.name)

    def as_dict(self) -> dict[str, str]:
        """The dictionary form MONAI datasets take."""
        return {
            "anatomical": str(self.anatomical),
            "functional": str(self.functional),
            "pair_type": self.pair_type,
            "name": self.name,
        }


def case_of(name: str) -> int:
    """Atlas case number of a slice file name such as ``25015.png`` (-> 25)."""
    stem = Path(name).stem
    if not stem.isdigit():
        raise ValueError(f"AANLIB slice names are numbers, got {name!r}")
    return int(stem) // 1000


def list_pairs(dataset_dir: str | Path, pair_types: Iterable[str] | None = None) -> list[FusionPair]:
    """All pairs under ``dataset_dir``, sorted by pair type and name.

    Raises:
        FileNotFoundError: if ``dataset_dir``, a requested pair type or its modality folders are missing.
        ValueError: if the two modality folders of a pair type hold different file names.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: data set folder not found (expected one subfolder per pair type, e.g. mri_ct/MRI and mri_ct/CT;"
            " give the folder that holds the data set)"
        )
    types = list(PAIR_TYPES) if pair_types is None else list(pair_types)
    pairs: list[FusionPair] = []
    for pair_type in types:
        if pair_type not in PAIR_TYPES:
            raise ValueError(f"unknown pair type {pair_type!r}; expected one of {sorted(PAIR_TYPES)}")
        anat_dir, func_dir = (root / pair_type / m for m in PAIR_TYPES[pair_type])
        for folder in (anat_dir, func_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: missing modality folder")
        anat_names = {p.name for p in anat_dir.iterdir() if p.is_file()}
        func_names = {p.name for p in func_dir.iterdir() if p.is_file()}
        if anat_names != func_names:
            unmatched = sorted(anat_names ^ func_names)[:5]
            raise ValueError(f"{root / pair_type}: unpaired files, e.g. {unmatched}")
        pairs.extend(
            FusionPair(pair_type, name, anat_dir / name, func_dir / name)
            for name in sorted(anat_names, key=lambda n: (len(n), n))
        )
    return pairs


def split_pairs(
    pairs: Sequence[FusionPair], validation_cases: Iterable[int] = DEFAULT_VALIDATION_CASES
) -> tuple[list[FusionPair], list[FusionPair]]:
    """Split pairs into (training, validation) by held-out atlas case."""
    held_out = set(validation_cases)
    train = [p for p in pairs if p.case not in held_out]
    val = [p for p in pairs if p.case in held_out]
    return train, val
