"""Train the bundle's shipped weights from scratch on this machine's CPU: the network of train.json (the fast
configuration; ``--network`` overrides its arguments, e.g. the paper's widths and LatLRR split) in two stages, with
the CPU recipe's data sampling and loss.

Stage 1 is the paper's autoencoder task (``train.json``), stage 2 trains with the fusion loss
(``train_fusion.json``; its terms weighted by ``--fusion-intensity-weight``, ``--fusion-gradient-weight`` and
``--fusion-correlation-weight``) from stage 1's last checkpoint, the modules ``--fusion-trainable`` names (default:
the whole network). Both stages layer the recipe's sampling on their config (``augment.json``,
``augment_fusion.json``): crops centred on the joint foreground (``--crop-background-weight``; 1 draws them
uniformly as the paper does) and, with probability ``--augmentation-prob``, a random gamma on the anatomical image
(another scanner's intensities). Both run through
``python -m monai.bundle run training`` (``mmif_monai.studies.training.train_mmif_net``) with ``--threads`` CPU
threads, keep their last checkpoint (validation is off, so nothing is selected on the validation split) and resume
when rerun: an interrupted run continues from its last epoch's checkpoint, so a run can also be done in parts.

Writes ``OUT/model.pt`` (stage 2's last parameters as ``{'model': state dict, 'network': MMIF-Net arguments}``, the
form ``bundles/mmif_net/models/model.pt`` holds, so that every loader builds the network trained), ``OUT/training.json``
(budgets, images seen, seconds as ``total_seconds``, threads, hardware, the command) and the two trainer logs under
``OUT/autoencoder`` and ``OUT/fusion``. ``--device cuda --num-workers 8`` is the GPU form.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from mmif_monai.errors import report_user_errors
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES
from mmif_monai.io.images import atomic_output
from mmif_monai.io.paths import BUNDLE_DIR, DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.networks.pretrained import NETWORK_ARGUMENTS, read_weights
from mmif_monai.studies.documents import machine_description
from mmif_monai.studies.training import BundleInputs, BundleRun, TrainingBudget, train_mmif_net, training_seconds

#: the CPU recipe's budgets and loss weights (bundles/mmif_net/docs/README.md, "Shipped weights")
RECIPE = {
    "epochs": 40,
    "iterations_per_epoch": 100,
    "batch_size": 8,
    "crop_size": 64,
    "fusion_epochs": 25,
    "fusion_iterations_per_epoch": 100,
    "fusion_learning_rate": 1e-3,
    "fusion_intensity_weight": 3.0,
    "fusion_gradient_weight": 3.0,
    "fusion_correlation_weight": 0.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO_ROOT / "outputs" / "shipped")
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--validation-cases", type=int, nargs="+", default=list(DEFAULT_VALIDATION_CASES))
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the training processes")
    parser.add_argument(
        "--num-workers", type=int, default=0, help="data-loading processes; > 0 also caches the training split"
    )
    parser.add_argument(
        "--epochs", type=int, default=RECIPE["epochs"], help="autoencoder epochs (cosine learning-rate decay over them)"
    )
    parser.add_argument("--iterations-per-epoch", type=int, default=RECIPE["iterations_per_epoch"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"], help="both stages")
    parser.add_argument("--crop-size", type=int, default=RECIPE["crop_size"], help="both stages")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="autoencoder (the paper's)")
    parser.add_argument("--fusion-epochs", type=int, default=RECIPE["fusion_epochs"])
    parser.add_argument("--fusion-iterations-per-epoch", type=int, default=RECIPE["fusion_iterations_per_epoch"])
    parser.add_argument("--fusion-learning-rate", type=float, default=RECIPE["fusion_learning_rate"])
    parser.add_argument(
        "--fusion-trainable", nargs="+", default=["all"],
        help="the network's submodules stage 2 trains: 'all' (the whole network), or names such as fusions (FA)",
    )  # fmt: skip
    parser.add_argument(
        "--fusion-intensity-weight", type=float, default=RECIPE["fusion_intensity_weight"],
        help="the fusion loss's intensity weight (train_fusion.json's intensity_weight, 1 there)",
    )  # fmt: skip
    parser.add_argument(
        "--fusion-gradient-weight", type=float, default=RECIPE["fusion_gradient_weight"],
        help="the fusion loss's gradient weight (train_fusion.json's gradient_weight, 1 there)",
    )  # fmt: skip
    parser.add_argument(
        "--fusion-correlation-weight", type=float, default=RECIPE["fusion_correlation_weight"],
        help="the fusion loss's SCD term (train_fusion.json's fusion_correlation_weight, 0 there)",
    )  # fmt: skip
    parser.add_argument(
        "--crop-background-weight", type=float, default=0.01,
        help="crop-centre weight of background pixels against 1 for foreground ones (1: uniform crops, the paper's)",
    )  # fmt: skip
    parser.add_argument(
        "--augmentation-prob", type=float, default=0.5,
        help="probability of a random gamma on each anatomical image (0: none, the paper's)",
    )  # fmt: skip
    parser.add_argument(
        "--network", type=json.loads, default={},
        help="MMIF-Net arguments over train.json's network_def, as JSON, e.g. the paper configuration: "
        "'{\"decompose\": true, \"stem_features\": 16, \"features\": [32, 32, 48, 48, 64]}'; the resulting "
        "arguments are recorded in model.pt, so that every loader builds the same network",
    )  # fmt: skip
    args = parser.parse_args()
    sys.exit(report_user_errors("train_shipped_weights", lambda: _train(args)))


def _network_arguments(config_file: Path, overrides: dict) -> dict:
    """The MMIF-Net arguments the training ran: ``config_file``'s network_def under ``overrides``."""
    parser = ConfigParser()
    parser.read_config(config_file)
    network_def = {**parser.get("network_def"), **overrides}
    return {name: network_def[name] for name in NETWORK_ARGUMENTS if name in network_def}


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
    torch.set_num_threads(args.threads)  # so that the recorded hardware line names the training's threads
    inputs = BundleInputs(
        args.dataset_dir,
        tuple(args.validation_cases),
        args.device,
        args.num_workers,
        args.num_workers > 0,
        args.threads,
    )
    unknown = set(args.network) - set(NETWORK_ARGUMENTS)
    if unknown:
        raise ValueError(
            f"--network: {', '.join(sorted(unknown))} not MMIF-Net arguments ({', '.join(NETWORK_ARGUMENTS)})"
        )
    overrides = {
        "crop_background_weight": args.crop_background_weight,
        "intensity_augmentation_prob": args.augmentation_prob,
        **{f"network_def#{name}": value for name, value in args.network.items()},
    }
    configs = BUNDLE_DIR / "configs"
    trainable = None if args.fusion_trainable == ["all"] else list(args.fusion_trainable)
    final, seconds = train_mmif_net(
        BundleRun(
            [configs / "train.json", configs / "augment.json"], args.out / "autoencoder", autoencoder, inputs, overrides
        ),
        args.out / "fusion",
        fusion,
        fusion_overrides={
            "intensity_weight": args.fusion_intensity_weight,
            "gradient_weight": args.fusion_gradient_weight,
            "fusion_correlation_weight": args.fusion_correlation_weight,
            # MONAI's command line drops None values: the expression "$None" is how a bundle key is set to None
            "trainable_modules": "$None" if trainable is None else trainable,
        },
        fusion_configs=[configs / "augment_fusion.json"],
    )
    network = _network_arguments(configs / "train.json", args.network)
    with atomic_output(args.out / "model.pt") as tmp:
        torch.save({"model": read_weights(final), "network": network}, tmp)
    digest = hashlib.sha256((args.out / "model.pt").read_bytes()).hexdigest()
    record = {
        "command": shlex.join(["python", "scripts/train_shipped_weights.py", *sys.argv[1:]]),
        "autoencoder": autoencoder.as_dict(),
        "fusion": fusion.as_dict(),
        "network": network,
        "fusion_trainable": trainable or "all",
        "fusion_intensity_weight": args.fusion_intensity_weight,
        "fusion_gradient_weight": args.fusion_gradient_weight,
        "fusion_correlation_weight": args.fusion_correlation_weight,
        "crop_background_weight": args.crop_background_weight,
        "augmentation_prob": args.augmentation_prob,
        "final_checkpoint": final.name,
        "images_seen": {
            stage: budget.iterations * budget.batch_size
            for stage, budget in (("autoencoder", autoencoder), ("fusion", fusion))
        },
        "training_seconds": {stage: training_seconds(args.out / stage) for stage in ("autoencoder", "fusion")},
        "total_seconds": seconds,
        "threads": args.threads,
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
