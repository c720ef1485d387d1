"""Turning a data set folder into the item dictionaries MONAI datasets take."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mmif_monai.engines.preflight import refuse_in_one_line
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, FusionPair, list_pairs, split_dataset

__all__ = ["image_items", "bundle_pairs", "bundle_split"]

PairTypes = Iterable[str] | Mapping[str, Sequence[str]] | None

logger = logging.getLogger(__name__)


def image_items(pairs: Iterable[FusionPair]) -> list[dict[str, str]]:
    """One ``{"image": path}`` item per source image: the autoencoder learns from both modalities alike."""
    return [{"image": str(path)} for pair in pairs for path in (pair.anatomical, pair.functional)]


def _require(dataset_dir: str | Path | None) -> None:
    if dataset_dir is None:
        raise SystemExit(
            "error: dataset_dir is required: add --dataset_dir DIR, a folder with one subfolder per pair type"
            " (e.g. mri_pet/MRI and mri_pet/PET holding the same file names)"
        )


def bundle_pairs(dataset_dir: str | Path | None, pair_types: PairTypes = None) -> list[FusionPair]:
    """:func:`~mmif_monai.io.aanlib.list_pairs` for bundle configs: a data set error ends the run with one line."""
    with refuse_in_one_line():
        _require(dataset_dir)
        return list_pairs(dataset_dir, pair_types)  # type: ignore[arg-type]  # None was refused above


def bundle_split(
    dataset_dir: str | Path | None,
    pair_types: PairTypes = None,
    validation_cases: Iterable[int] = DEFAULT_VALIDATION_CASES,
    validation_file: str | Path | None = None,
    validation_fraction: float | None = None,
    output_dir: str | Path | None = None,
    executed_config: object = None,
) -> tuple[list[FusionPair], list[FusionPair]]:
    """:func:`~mmif_monai.io.aanlib.split_dataset` for bundle configs, evaluated in ``initialize`` so that a
    missing ``dataset_dir``, a wrong layout or an empty split ends the run with one line before any other work,
    leaving nothing in ``output_dir`` (:func:`~mmif_monai.engines.preflight.refuse_in_one_line`)."""
    with refuse_in_one_line(output_dir, executed_config):
        _require(dataset_dir)
        train, val = split_dataset(dataset_dir, pair_types, validation_cases, validation_file, validation_fraction)  # type: ignore[arg-type]
    types = ", ".join(dict.fromkeys(p.pair_type for p in train + val))
    logger.info("%s: %d training and %d validation pairs (%s)", dataset_dir, len(train), len(val), types)
    return train, val
