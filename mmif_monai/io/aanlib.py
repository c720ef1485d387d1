"""Listing and splitting a folder laid out like the AANLIB copy in ``shared/data/aanlib``.

Layout: one subfolder per pair type (``mri_ct``, ``mri_pet``, ``mri_spect``), each with one subfolder per
modality (``MRI`` + ``CT`` / ``PET`` / ``SPECT``); a pair is the same file name in both modality folders. Any
subset of the pair types may be present, and a site's own data may name its folders otherwise (``pair_types``).

File names are numbers whose thousands prefix names an atlas case (``25015.png`` is slice 15 of case 25);
neighbouring slices of one case are strongly correlated, so the split holds out whole cases. The same case
number held out in every pair type keeps a subject's MRI out of training when it appears in several types. Data
named otherwise is split by a list of validation pairs or by a fraction taken as one block of names per pair type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PAIR_TYPES",
    "DEFAULT_VALIDATION_CASES",
    "DatasetLayoutError",
    "FusionPair",
    "case_of",
    "resolve_pair_types",
    "list_pairs",
    "split_pairs",
    "split_by_fraction",
    "split_by_list",
    "split_dataset",
    "validation_rule",
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


class DatasetLayoutError(FileNotFoundError):
    """A data set folder not laid out as :func:`list_pairs` reads it; the message names the folder and the layout."""


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


def _layout(pair_types: Mapping[str, Sequence[str]]) -> str:
    """The expected layout, in words, for error messages."""
    examples = ", ".join(f"{name}/{anatomical} + {name}/{second}" for name, (anatomical, second) in pair_types.items())
    return (
        f"expected one folder per pair type, each with one folder per modality holding the same file names ({examples})"
    )


def resolve_pair_types(
    dataset_dir: str | Path, pair_types: Iterable[str] | Mapping[str, Sequence[str]] | None = None
) -> dict[str, tuple[str, str]]:
    """Pair type -> (anatomical folder, second folder) for the pair types to read under ``dataset_dir``.

    Args:
        dataset_dir: the data set folder.
        pair_types: None for every AANLIB pair type (:data:`PAIR_TYPES`) with a folder under ``dataset_dir``;
            names from :data:`PAIR_TYPES`; or a mapping of a site's own pair-type folders to their two modality
            folders, e.g. ``{"brain_pet": ["T1", "FDG"]}``.

    Raises:
        DatasetLayoutError: ``dataset_dir`` is missing, or (for None) holds none of the AANLIB pair-type folders.
        ValueError: an unknown pair type name, or a mapping entry that does not name two folders.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: data set folder not found; {_layout(PAIR_TYPES)}")
    if pair_types is None:
        found = {name: folders for name, folders in PAIR_TYPES.items() if (root / name).is_dir()}
        if not found:
            raise DatasetLayoutError(
                f"{root}: none of the pair-type folders {', '.join(PAIR_TYPES)}; {_layout(PAIR_TYPES)};"
                " for other folder names set pair_types"
            )
        return found
    if isinstance(pair_types, Mapping):
        resolved = {}
        for name, folders in pair_types.items():
            if isinstance(folders, str) or len(folders) != 2:
                raise ValueError(
                    f"pair type {name!r}: give its two modality folders (anatomical, second), got {folders!r}"
                )
            resolved[str(name)] = (str(folders[0]), str(folders[1]))
        return resolved
    unknown = sorted(set(pair_types) - set(PAIR_TYPES))
    if unknown:
        raise ValueError(
            f"unknown pair types {unknown}; expected some of {sorted(PAIR_TYPES)} or a mapping to modality folders"
        )
    return {name: PAIR_TYPES[name] for name in pair_types}


def list_pairs(
    dataset_dir: str | Path, pair_types: Iterable[str] | Mapping[str, Sequence[str]] | None = None
) -> list[FusionPair]:
    """All pairs under ``dataset_dir``, sorted by pair type and name.

    Args:
        dataset_dir: the data set folder.
        pair_types: which pair types to read, as :func:`resolve_pair_types` takes them (None: every AANLIB pair
            type present).

    Raises:
        DatasetLayoutError: if ``dataset_dir``, a requested pair type or its modality folders are missing, or a
            pair type holds no files.
        ValueError: if the two modality folders of a pair type hold different file names.
    """
    root = Path(dataset_dir)
    types = resolve_pair_types(root, pair_types)
    pairs: list[FusionPair] = []
    for pair_type, folders in types.items():
        anat_dir, func_dir = (root / pair_type / m for m in folders)
        for folder in (anat_dir, func_dir):
            if not folder.is_dir():
                raise DatasetLayoutError(f"{folder}: missing modality folder; {_layout({pair_type: folders})}")
        anat_names = {p.name for p in anat_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
        func_names = {p.name for p in func_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
        if not anat_names:
            raise DatasetLayoutError(f"{anat_dir}: no image files; {_layout({pair_type: folders})}")
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


def split_by_fraction(pairs: Sequence[FusionPair], fraction: float) -> tuple[list[FusionPair], list[FusionPair]]:
    """Split pairs into (training, validation), holding out the last ``fraction`` of each pair type's pairs.

    The held-out pairs are one block of consecutive names, never a random draw of slices: neighbouring slices of a
    subject are nearly alike, and exports name files by subject then slice, so a block keeps whole subjects out
    of training (all but, at most, the one the block starts in).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie between 0 and 1, got {fraction}")
    train: list[FusionPair] = []
    val: list[FusionPair] = []
    for pair_type in dict.fromkeys(p.pair_type for p in pairs):
        of_type = [p for p in pairs if p.pair_type == pair_type]
        if len(of_type) < 2:
            raise ValueError(f"{pair_type}: {len(of_type)} pair; a validation fraction needs at least two")
        held_out = min(len(of_type) - 1, max(1, round(fraction * len(of_type))))
        train += of_type[:-held_out]
        val += of_type[-held_out:]
    return train, val


def split_by_list(pairs: Sequence[FusionPair], names_file: str | Path) -> tuple[list[FusionPair], list[FusionPair]]:
    """Split pairs into (training, validation) by a text file naming the validation pairs.

    One pair per line, as ``pair_type/file name`` or a bare file name (that name in every pair type); blank lines
    and lines starting with ``#`` are skipped.

    Raises:
        ValueError: a listed pair that is not in ``pairs``.
    """
    lines = [line.strip() for line in Path(names_file).read_text().splitlines()]
    listed = {line for line in lines if line and not line.startswith("#")}
    keys = {f"{p.pair_type}/{p.name}" for p in pairs} | {p.name for p in pairs}
    unknown = sorted(listed - keys)
    if unknown:
        raise ValueError(f"{names_file}: {len(unknown)} listed pairs are not in the data set, e.g. {unknown[:3]}")

    def held_out(pair: FusionPair) -> bool:
        return pair.name in listed or f"{pair.pair_type}/{pair.name}" in listed

    return [p for p in pairs if not held_out(p)], [p for p in pairs if held_out(p)]


def validation_rule(
    validation_cases: Iterable[int] = DEFAULT_VALIDATION_CASES,
    validation_file: str | Path | None = None,
    validation_fraction: float | None = None,
) -> str:
    """The validation split :func:`split_dataset` takes from these settings (the first given), in words."""
    if validation_file is not None:
        return f"the pairs listed in {validation_file}"
    if validation_fraction is not None:
        return f"the last {validation_fraction:g} of each pair type"
    return f"atlas cases {list(validation_cases)}"


def split_dataset(
    dataset_dir: str | Path,
    pair_types: Iterable[str] | Mapping[str, Sequence[str]] | None = None,
    validation_cases: Iterable[int] = DEFAULT_VALIDATION_CASES,
    validation_file: str | Path | None = None,
    validation_fraction: float | None = None,
) -> tuple[list[FusionPair], list[FusionPair]]:
    """The (training, validation) pairs of a data set folder.

    The split is the first given of: ``validation_file`` (:func:`split_by_list`), ``validation_fraction``
    (:func:`split_by_fraction`), ``validation_cases`` (AANLIB atlas cases, :func:`split_pairs`).

    Raises:
        DatasetLayoutError: see :func:`list_pairs`.
        ValueError: unpaired files, or a split that leaves the training or the validation part empty.
    """
    pairs = list_pairs(dataset_dir, pair_types)
    validation_cases = list(validation_cases)  # used twice below
    rule = validation_rule(validation_cases, validation_file, validation_fraction)
    if validation_file is not None:
        train, val = split_by_list(pairs, validation_file)
    elif validation_fraction is not None:
        train, val = split_by_fraction(pairs, validation_fraction)
    else:
        try:
            train, val = split_pairs(pairs, validation_cases)
        except ValueError as error:  # a site's own file names carry no atlas case
            raise ValueError(f"{dataset_dir}: {error}; set validation_fraction or validation_file") from None
    for part, held in (("training", train), ("validation", val)):
        if not held:
            raise ValueError(
                f"{dataset_dir}: the {part} split is empty (validation: {rule}); set validation_cases,"
                " validation_fraction or validation_file"
            )
    return train, val
