"""Fuse the validation split with each method and score it with the fusion metrics.

Writes, per pair type, the fused images and ``mmif evaluate``'s outputs under ``--out``, and one Markdown
document (default ``docs/validation.md``) with a table per pair type. Example (the table in docs):

    python scripts/evaluate_validation.py --dataset-dir ../shared/data/aanlib

``--limit N`` scores only the first N validation pairs of each type (a quick smoke run). The method
``max-autoencoded`` is a diagnostic, not a fusion method: pixel-max fusion reconstructed by MMIF-Net's
autoencoder, which shows what the network loses of the max image by itself (bundles/mmif_net/docs/README.md):

    python scripts/evaluate_validation.py --methods max mmif-net max-autoencoded --doc OUT/ceiling.md \
        --figure OUT/ceiling.png --figure-methods max max-autoencoded
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmif_monai.io.paths import DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.studies.validation import DEFAULT_METHODS, ValidationSettings, run_validation


def main() -> None:
    defaults = ValidationSettings(Path(), Path(), Path())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "validation")
    parser.add_argument(
        "--doc", type=Path,
        help="the document to write (default: docs/validation.md; docs/validation_published.md with --protocol"
        " published; _shifted before .md with --shifted)",
    )  # fmt: skip
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--ssim-protocol", choices=["literature", "correct"], default=defaults.ssim_protocol)
    parser.add_argument(
        "--protocol", choices=["project", "published"], default=defaults.protocol,
        help="published: CDDFuse's evaluator (images as written, MI in nats), with MMIF-Net's ratios to pixel-max"
        " next to the quality targets",
    )  # fmt: skip
    parser.add_argument(
        "--shifted", action="store_true",
        help="score the shifted variant: the same pairs with each anatomical image darkened by the gamma that halves"
        " its mean grey, as another scanner would give them",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each type")
    parser.add_argument(
        "--figure", type=Path,
        help="default: the bundle's docs/validation_grid.png; docs/validation_shifted_grid.png with --shifted",
    )  # fmt: skip
    parser.add_argument(
        "--figure-methods", nargs="+", default=list(defaults.figure_methods),
        help="the figure's columns after the sources (two slices of each pair type per row)",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--weights", type=Path, default=None,
        help="MMIF-Net weights to score instead of the shipped ones (a state dict or training checkpoint), e.g. a"
        " candidate before it is shipped; give --doc and --figure other paths then",
    )  # fmt: skip
    args = parser.parse_args()
    published = args.protocol == "published"
    stem = "validation" + ("_published" if published else "") + ("_shifted" if args.shifted else "")
    args.doc = args.doc or REPO_ROOT / "docs" / f"{stem}.md"
    if args.figure is None:
        bundle_figure = REPO_ROOT / "bundles" / "mmif_net" / "docs" / "validation_grid.png"
        args.figure = REPO_ROOT / "docs" / "validation_shifted_grid.png" if args.shifted else bundle_figure
    run_validation(
        ValidationSettings(
            out_dir=args.out,
            doc=args.doc,
            figure=args.figure,
            dataset_dir=args.dataset_dir,
            methods=args.methods,
            figure_methods=args.figure_methods,
            ssim_protocol=args.ssim_protocol,
            protocol=args.protocol,
            limit=args.limit,
            device=args.device,
            weights=args.weights,
            shifted=args.shifted,
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()
