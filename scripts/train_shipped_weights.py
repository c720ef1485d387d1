"""Train the bundle's shipped weights: the paper configuration (MSL + SA + FA, λ from train.json) in two stages.

Stage 1 is the paper's autoencoder task (``train.json``), stage 2 fine-tunes FA alone with the fusion loss
(``train_fusion.json``, its gradient term weighted by ``--fusion-gradient-weight``, its SCD term by
``--fusion-correlation-weight``) from stage 1's last checkpoint; both run through ``python -m monai.bundle run
training`` (``mmif_monai.studies.training.train_mmif_net``), keep their last checkpoint (validation is off, so
nothing is selected on the validation split) and resume when rerun. Writes ``OUT/model.pt`` (the parameters of stage
2's last checkpoint, what ``bundles/mmif_net/models/model.pt`` holds), ``OUT/training.json`` (budgets, seconds,
hardware) and the two trainer logs under ``OUT/autoencoder`` and ``OUT/fusion``. The shipped weights came from
the commands in the bundle README; ``--device cuda --num-workers 8`` is the GPU form.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from mmif_monai.errors import report_user_errors
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES
from mmif_monai.io.images import atomic_output
from mmif_monai.io.paths import BUNDLE_DIR, DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.networks.pretrained import read_weights
from mmif_monai.studies.documents import machine_description
from mmif_monai.studies.training import BundleInputs, BundleRun, TrainingBudget, train_mmif_net, training_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO_ROOT / "outputs" / "shipped")
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--validation-cases", type=int, nargs="+", default=list(DEFAULT_VALIDATION_CASES))
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1")
    parser.add_argument(
        "--num-workers", type=int, default=0, help="data-loading processes; > 0 also caches the training split"
    )
    parser.add_argument(
        "--epochs", type=int, default=8, help="autoencoder epochs (cosine learning-rate decay over them)"
    )
    parser.add_argument("--iterations-per-epoch", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8, help="both stages")
    parser.add_argument("--crop-size", type=int, default=96, help="both stages")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="autoencoder (the paper's)")
    parser.add_argument("--fusion-epochs", type=int, default=4)
    parser.add_argument("--fusion-iterations-per-epoch", type=int, default=100)
    parser.add_argument("--fusion-learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--fusion-gradient-weight", type=float, default=3.0,
        help="the fusion loss's gradient weight (train_fusion.json's gradient_weight, 1 there; the shipped weights: 3)",
    )  # fmt: skip
    parser.add_argument(
        "--fusion-correlation-weight", type=float, default=0.0,
        help="the fusion loss's SCD term (train_fusion.json's fusion_correlation_weight; the shipped weights: 0)",
    )  # fmt: skip
    args = parser.parse_args()
    sys.exit(report_user_errors("train_shipped_weights", lambda: _train(args)))


def _train(args: argparse.Namespace) -> None:
    autoencoder = TrainingBudget(
        args.epochs, args.iterations_per_epoch, args.batch_size, args.crop_size, args.learning_rate
    )
    fusion = TrainingBudget(
        args.fusion_epochs,
        args.fusion_iterations_per_epoch,
        args.batch_size,
        args.crop_size,
        args.fusion_learning_rate,
    )
    if not args.dataset_dir.is_dir():
        raise FileNotFoundError(f"{args.dataset_dir}: data set folder not found (--dataset-dir)")
    inputs = BundleInputs(
        args.dataset_dir, tuple(args.validation_cases), args.device, args.num_workers, cache=args.num_workers > 0
    )
    final, seconds = train_mmif_net(
        BundleRun([BUNDLE_DIR / "configs" / "train.json"], args.out / "autoencoder", autoencoder, inputs),
        args.out / "fusion",
        fusion,
        fusion_overrides={
            "gradient_weight": args.fusion_gradient_weight,
            "fusion_correlation_weight": args.fusion_correlation_weight,
        },
    )
    with atomic_output(args.out / "model.pt") as tmp:
        torch.save(read_weights(final), tmp)
    digest = hashlib.sha256((args.out / "model.pt").read_bytes()).hexdigest()
    record = {
        "autoencoder": autoencoder.as_dict(),
        "fusion": fusion.as_dict(),
        "fusion_gradient_weight": args.fusion_gradient_weight,
        "fusion_correlation_weight": args.fusion_correlation_weight,
        "final_checkpoint": final.name,
        "training_seconds": {stage: training_seconds(args.out / stage) for stage in ("autoencoder", "fusion")},
        "total_seconds": seconds,
        "hardware": machine_description(args.device),
        "num_workers": args.num_workers,
        "model_sha256": digest,
    }
    with atomic_output(args.out / "training.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"wrote {args.out / 'model.pt'} (sha256 {digest[:12]}...)")


if __name__ == "__main__":
    main()
