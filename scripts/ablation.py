"""MMIF-Net's ablation (MSL, SA, FA: the paper's Table 4) and a λ sweep on the validation split.

Trains every variant through the bundle under one budget, fuses and scores the validation split, and writes
``docs/ablation.md`` (library: ``mmif_monai.studies.ablation``). Interrupted runs continue where they
stopped: finished trainings and fused images in ``--out`` are reused. ``--seeds 0 1 2`` trains every variant
once per seed and adds the spread over seeds to the tables. The tables in docs came from

    python scripts/ablation.py --seeds 0 1 2

``--limit N`` scores only the first N validation pairs of each type (a quick smoke run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmif_monai.errors import report_user_errors
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES
from mmif_monai.io.paths import DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.studies.ablation import LAMBDA_SWEEP, AblationSettings, run_ablation
from mmif_monai.studies.training import TrainingBudget


def main() -> None:
    defaults = AblationSettings(out_dir=Path(), doc=Path())
    a, f = defaults.autoencoder_budget, defaults.fusion_budget
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO_ROOT / "outputs" / "ablation")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "ablation.md")
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--epochs", type=int, default=a.epochs, help="autoencoder epochs")
    parser.add_argument("--iterations-per-epoch", type=int, default=a.iterations_per_epoch)
    parser.add_argument("--batch-size", type=int, default=a.batch_size, help="both stages")
    parser.add_argument("--crop-size", type=int, default=a.crop_size, help="both stages")
    parser.add_argument("--learning-rate", type=float, default=a.learning_rate, help="autoencoder")
    parser.add_argument("--fusion-epochs", type=int, default=f.epochs, help="FA fine-tuning epochs")
    parser.add_argument("--fusion-iterations-per-epoch", type=int, default=f.iterations_per_epoch)
    parser.add_argument("--fusion-learning-rate", type=float, default=f.learning_rate)
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDA_SWEEP), help="SSIM weights to sweep")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(defaults.seeds), help="train every variant once per seed"
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each type")
    parser.add_argument("--validation-cases", type=int, nargs="+", default=list(DEFAULT_VALIDATION_CASES))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    settings = AblationSettings(
        out_dir=args.out,
        doc=args.doc,
        dataset_dir=args.dataset_dir,
        autoencoder_budget=TrainingBudget(
            args.epochs, args.iterations_per_epoch, args.batch_size, args.crop_size, args.learning_rate
        ),
        fusion_budget=TrainingBudget(
            args.fusion_epochs,
            args.fusion_iterations_per_epoch,
            args.batch_size,
            args.crop_size,
            args.fusion_learning_rate,
        ),
        lambdas=args.lambdas,
        limit=args.limit,
        validation_cases=tuple(args.validation_cases),
        device=args.device,
        seeds=args.seeds,
    )
    sys.exit(report_user_errors("ablation", lambda: run_ablation(settings)))


if __name__ == "__main__":
    main()
