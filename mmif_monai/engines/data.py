"""Turning a data set folder into the item dictionaries MONAI datasets take."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, FusionPair, list_pairs, split_dataset

__all__ = ["image_items", "bundle_pairs", "bundle_split"]

PairTypes = Iterable[str] | Mapping[str, Sequence[str]] | None

logger = logging.getLogger(__name__)


def image_items(pairs: Iterable[FusionPair]) -> list[dict[str, str]]:
    """One ``{"image": path}`` item per source image: the autoencoder learns from both modalities alike."""
    return [{"image": str(path)} for pair in pairs for path in (pair.anatomical, pair.functional)]


@contextmanager
def _one_line_errors(dataset_dir: str | Path | None) -> Iterator[None]:
    """End the run with one line naming the folder and the expected layout on a data set error (``SystemExit``):
    raised inside a bundle config expression, anything else reaches the user as a chained traceback through
    MONAI's ``Failed to evaluate``."""
    if dataset_dir is None:
        raise SystemExit(
            "error: dataset_dir is required: add --dataset_dir DIR, a folder with one subfolder per pair type"
            " (e.g. mri_pet/MRI and mri_pet/PET holding the same file names)"
        )
    try:
        yield
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


def bundle_pairs(dataset_dir: str | Path | None, pair_types: PairTypes = None) -> list[FusionPair]:
    """:func:`~mmif_monai.io.aanlib.list_pairs` for bundle configs: a data set error ends the run with one line."""
    with _one_line_errors(dataset_dir):
        return list_pairs(dataset_dir, pair_types)  # type: ignore[arg-type]  # None was refused above


def bundle_split(
    dataset_dir: str | Path | None,
    pair_types: PairTypes = None,
    validation_cases: Iterable[int] = DEFAULT_VALIDATION_CASES,
    validation_file: str | Path | None = None,
    validation_fraction: float | None = None,
) -> tuple[list[FusionPair], list[FusionPair]]:
    """:func:`~mmif_monai.io.aanlib.split_dataset` for bundle configs, evaluated in ``initialize`` so that a
    missing ``dataset_dir``, a wrong layout or an empty split ends the run with one line before any other work."""
    with _one_line_errors(dataset_dir):
        train, val = split_dataset(dataset_dir, pair_types, validation_cases, validation_file, validation_fraction)  # type: ignore[arg-type]
    types = ", ".join(dict.fromkeys(p.pair_type for p in train + val))
    logger.info("%s: %d training and %d validation pairs (%s)", dataset_dir, len(train), len(val), types)
    return train, val
