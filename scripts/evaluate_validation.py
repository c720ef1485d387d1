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

from mmif_monai.comparison.ablation import TARGET_METRICS
from mmif_monai.fusion.classical import CLASSICAL_METHODS
from mmif_monai.fusion.comparison import fuse_with_methods, save_fusion_grid, stage_sources
from mmif_monai.fusion.methods import AUTOENCODED_MAX, NETWORK_METHOD
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, PAIR_TYPES, list_pairs, split_pairs
from mmif_monai.io.paths import DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.metrics.report import evaluate_folders, write_evaluation
from mmif_monai.metrics.statistics import paired_comparison, paired_comparison_table


def describe_methods(methods: list[str], weights: Path | None) -> str:
    """The doc's sentence on what was scored: the methods asked for, and which MMIF-Net weights they used."""
    weights_phrase = f"the weights in `{weights}`" if weights else "the bundle's shipped weights"
    weights_phrase += " (bundles/mmif_net/docs/README.md says how far they were trained)"
    classical = [m for m in CLASSICAL_METHODS if m in methods]
    described = []
    if classical == list(CLASSICAL_METHODS):
        described.append("the classical baselines (docs/metrics.md)")
    elif classical:
        names = ", ".join(f"`{m}`" for m in classical)
        described.append(f"the classical baseline{'s' if len(classical) > 1 else ''} {names} (docs/metrics.md)")
    if NETWORK_METHOD in methods:
        described.append(f"MMIF-Net with {weights_phrase}")
    sentence = " and ".join(described)
    if AUTOENCODED_MAX in methods:
        autoencoder = "those weights' autoencoder"
        if NETWORK_METHOD not in methods:
            autoencoder = f"MMIF-Net's autoencoder with {weights_phrase}"
        sentence += (
            f"{'; ' if described else ''}`{AUTOENCODED_MAX}` is no fusion method but the pixel-max image reconstructed"
            f" by {autoencoder}, a diagnostic of what the network loses by itself"
        )
    return sentence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "validation")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "validation.md")
    default_methods = [*CLASSICAL_METHODS, NETWORK_METHOD]
    parser.add_argument("--methods", nargs="+", default=default_methods)
    parser.add_argument("--ssim-protocol", choices=["literature", "correct"], default="literature")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each type")
    parser.add_argument(
        "--figure", type=Path, default=REPO_ROOT / "bundles" / "mmif_net" / "docs" / "validation_grid.png"
    )
    parser.add_argument(
        "--figure-methods", nargs="+", default=[NETWORK_METHOD, "max", "laplacian"],
        help="the figure's columns after the sources (two slices of each pair type per row)",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--weights", type=Path, default=None,
        help="MMIF-Net weights to score instead of the shipped ones (a state dict or training checkpoint), e.g. a"
        " candidate before it is shipped; give --doc and --figure other paths then",
    )  # fmt: skip
    args = parser.parse_args()

    _, validation = split_pairs(list_pairs(args.dataset_dir), DEFAULT_VALIDATION_CASES)
    sections = [
        "# Validation results",
        "",
        f"Validation split: atlas cases {', '.join(map(str, DEFAULT_VALIDATION_CASES))} of the AANLIB copy "
        '(docs/method.md, "Data split"). Regenerate with:',
        "",
        "    python scripts/evaluate_validation.py"
        + (f" --ssim-protocol {args.ssim_protocol}" if args.ssim_protocol != "literature" else "")
        + (f" --methods {' '.join(args.methods)}" if args.methods != default_methods else "")
        + (f" --weights {args.weights}" if args.weights else ""),
        "",
        "Methods: "
        + describe_methods(args.methods, args.weights)
        + ". Colour sources and results are scored on their luminance.",
        "",
    ]
    figure_folders: dict[str, dict[str, Path]] = {}
    figure_pairs = []
    for pair_type in PAIR_TYPES:
        pairs = [p for p in validation if p.pair_type == pair_type][: args.limit]
        if not pairs:
            continue
        out = args.out / pair_type
        anatomical, functional = stage_sources(pairs, out / "sources")
        folders = fuse_with_methods(pairs, args.methods, out / "fused", device=args.device, weights=args.weights)
        figure_folders[pair_type] = {m: folders[m] for m in args.figure_methods if m in folders}
        figure_pairs += [pairs[len(pairs) // 3], pairs[2 * len(pairs) // 3]] if len(pairs) > 2 else pairs[:1]
        results = evaluate_folders(folders, anatomical, functional, args.ssim_protocol, device=args.device)
        table, _ = write_evaluation(
            results, out / "metrics", anatomical, functional, args.ssim_protocol, overwrite=True
        )
        rules = [m for m in CLASSICAL_METHODS if m in results]
        if NETWORK_METHOD in results and rules:
            # is MMIF-Net's lead or lag on the quality target's metrics larger than the images' spread explains?
            comparison = paired_comparison(results, [(NETWORK_METHOD, r) for r in rules], metrics=TARGET_METRICS)
            table += "\n" + paired_comparison_table(comparison)
        print(f"\n## {pair_type} ({len(pairs)} pairs)\n\n{table}")
        sections += [f"## {pair_type} ({len(pairs)} pairs)", "", table, ""]
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text("\n".join(sections))
    save_fusion_grid(figure_pairs, figure_folders, args.figure)
    print(f"\nwrote {args.doc} and {args.figure}")


if __name__ == "__main__":
    main()
