"""Measure on the validation split how far fusion moves PET/SPECT colours and how much of the CT's bone it greys.

Fuses the validation split's MRI–PET and MRI–SPECT pairs with each method, without a limit and with each
``--limits`` setting (fused images kept under ``--out`` and reused), scores colour fidelity (CIEDE2000 per
colour-scale step, pixels moved to another step) next to the anatomy metrics; fuses its MRI–CT pairs without a
limit and scores bone fidelity (CT bone pixels shown below the bone level) next to the same metrics; and writes
docs/colour.md:

    python scripts/colour_fidelity.py

``--limit N`` scores only the first N validation pairs of each type (a quick smoke run; give --doc elsewhere).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmif_monai.fusion.colour import LuminanceLimit
from mmif_monai.io.paths import DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.studies.colour import DEFAULT_LIMITS, DEFAULT_METHODS, ColourSettings, run_colour_study


def _limit(text: str) -> LuminanceLimit:
    try:
        level, detail = (float(part) for part in text.split(":"))
        return LuminanceLimit(level=level, detail=detail)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected LEVEL:DETAIL, two positive numbers, got {text!r}") from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "colour")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "colour.md")
    parser.add_argument("--figure", type=Path, default=REPO_ROOT / "docs" / "colour_grid.png")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument(
        "--limits", nargs="+", type=_limit, default=list(DEFAULT_LIMITS), metavar="LEVEL:DETAIL",
        help="luminance limits to measure besides none (default: 0.01:0.06 0.02:0.12 0.03:0.2)",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each type")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    run_colour_study(
        ColourSettings(
            out_dir=args.out,
            doc=args.doc,
            figure=args.figure,
            dataset_dir=args.dataset_dir,
            methods=args.methods,
            limits=args.limits,
            limit=args.limit,
            device=args.device,
        )
    )


if __name__ == "__main__":
    main()
