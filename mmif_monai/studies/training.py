"""Training a comparison method through the MMIF-Net bundle, under one budget shared by every method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmif_monai.engines import latest_checkpoint
from mmif_monai.errors import MMIFError
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES
from mmif_monai.io.paths import BUNDLE_DIR, REPO_ROOT
from mmif_monai.studies.methods import COMPARISON_METHODS, bundle_config_files

__all__ = [
    "TrainingBudget",
    "BundleInputs",
    "BundleRun",
    "check_budget_record",
    "train_bundle",
    "train_method",
    "train_mmif_net",
    "training_seconds",
    "write_budget_record",
]

#: the file in a study's output folder that records the training budgets its checkpoints were trained under
BUDGET_RECORD = "budget.json"
#: the file in a checkpoint folder that keeps the wall seconds spent training into it, over all calls
SECONDS_RECORD = "training_seconds.txt"


@dataclass(frozen=True)
class TrainingBudget:
    """What every compared network gets: the same iterations, batch, crop, optimiser (Adam) and schedule
    (cosine over the epochs; the learning rate steps once per epoch)."""

    epochs: int = 4
    iterations_per_epoch: int = 15
    batch_size: int = 4
    crop_size: int = 64
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if min(self.epochs, self.iterations_per_epoch, self.batch_size) < 1:
            raise ValueError(f"training budget needs positive epochs, iterations and batch size, got {self}")
        if self.crop_size < 64:
            raise ValueError(f"crop_size must be >= 64 (FusionGAN's discriminator and MMIF-Net), got {self.crop_size}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    @property
    def iterations(self) -> int:
        return self.epochs * self.iterations_per_epoch

    @property
    def images(self) -> int:
        """Training crops seen: one per batch item per iteration."""
        return self.iterations * self.batch_size

    def describe(self) -> str:
        return (
            f"{self.iterations} iterations ({self.epochs} epochs x {self.iterations_per_epoch}) of batch "
            f"{self.batch_size}, {self.crop_size}x{self.crop_size} random crops, Adam, learning rate "
            f"{self.learning_rate:g} with cosine decay per epoch"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def check_budget_record(out_dir: str | Path, record: Mapping) -> None:
    """Refuse an output folder whose checkpoints were trained under other budgets than ``record``.

    Raises:
        ValueError: naming the record file and what it holds.
    """
    path = Path(out_dir) / BUDGET_RECORD
    if path.is_file() and json.loads(path.read_text()) != record:
        raise ValueError(
            f"{path}: this output folder holds a run with other training budgets ({path.read_text().strip()});"
            " use another folder so that checkpoints are not mixed"
        )


def write_budget_record(out_dir: str | Path, record: Mapping) -> None:
    """Record in ``out_dir`` the budgets its checkpoints are trained under (see :func:`check_budget_record`)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / BUDGET_RECORD).write_text(json.dumps(record) + "\n")


def training_seconds(ckpt_dir: str | Path) -> float:
    """The wall seconds :func:`train_bundle` has spent training into ``ckpt_dir`` (0 before its first run)."""
    record = Path(ckpt_dir) / SECONDS_RECORD
    return float(record.read_text()) if record.is_file() else 0.0


@dataclass(frozen=True)
class BundleInputs:
    """What every training run of a study shares: the data, the held-out cases, the device, and how data load.

    By default nothing is cached and data load in the main process: a short budget reads far fewer images than
    caching the training split would load (minutes per run on a 2-core CPU). A long run on a GPU wants ``cache``
    (the training split decoded once) and ``num_workers`` processes for the random crops, so that the GPU does not
    wait for data.
    """

    dataset_dir: Path
    validation_cases: tuple[int, ...] = DEFAULT_VALIDATION_CASES
    device: str = "cpu"
    num_workers: int = 0
    cache: bool = False
    #: CPU threads of the training process (``OMP_NUM_THREADS``); None leaves torch's default, one per core
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class BundleRun:
    """One training run through the bundle: ``config_files`` merged in order, trained into ``ckpt_dir`` under
    ``budget`` on ``inputs``; ``overrides`` are further config ids and their values."""

    config_files: Sequence[str | Path]
    ckpt_dir: Path
    budget: TrainingBudget
    inputs: BundleInputs
    overrides: Mapping[str, object] = field(default_factory=dict)

    def command(self) -> list[str]:
        """The ``python -m monai.bundle run training`` command of this run, as a user would type it.

        Validation during training is switched off (interval beyond the last epoch): studies keep the last
        checkpoint instead of selecting one on the split they report.
        """
        budget, inputs, ckpt_dir = self.budget, self.inputs, Path(self.ckpt_dir)
        command = [
            sys.executable, "-m", "monai.bundle", "run", "training",
            "--bundle_root", str(BUNDLE_DIR),
            "--meta_file", str(BUNDLE_DIR / "configs" / "metadata.json"),
            "--config_file", json.dumps([str(f) for f in self.config_files]),
            "--dataset_dir", str(inputs.dataset_dir),
            "--validation_cases", json.dumps(list(inputs.validation_cases)),
            "--ckpt_dir", str(ckpt_dir),
            "--output_dir", str(ckpt_dir / "eval"),
            "--device", f"$torch.device('{inputs.device}')",
            "--epochs", str(budget.epochs),
            "--max_iterations_per_epoch", str(budget.iterations_per_epoch),
            "--batch_size", str(budget.batch_size),
            "--crop_size", json.dumps([budget.crop_size, budget.crop_size]),
            "--learning_rate", str(budget.learning_rate),
            "--val_interval", str(budget.epochs + 1),
            "--train#dataset#cache_rate", "1.0" if inputs.cache else "0.0",
            "--validate#dataset#cache_rate", "0.0",
            "--num_workers", str(inputs.num_workers),
        ]  # fmt: skip
        for key, value in self.overrides.items():
            # a Python literal, which is how MONAI's command line reads values (JSON would spell true as "true")
            command += [f"--{key}", repr(str(value)) if isinstance(value, Path) else repr(value)]
        return command


def train_bundle(run: BundleRun) -> tuple[Path, float]:
    """Train ``run`` (resuming a killed one) and return the final checkpoint and the wall seconds training took
    (over all calls, kept in its ``ckpt_dir``: :func:`training_seconds`). A finished run is not repeated. The
    bundle's log goes to ``ckpt_dir/train.log``.

    Raises:
        MMIFError: training failed (the message names the log file).
    """
    ckpt_dir = Path(run.ckpt_dir)
    final = ckpt_dir / f"checkpoint_epoch={run.budget.epochs}.pt"
    spent = training_seconds(ckpt_dir)
    if final.is_file():
        return final, spent
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    log = ckpt_dir / "train.log"
    start = time.perf_counter()
    env = dict(os.environ)
    if run.inputs.threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(run.inputs.threads)
    with open(log, "a") as handle:
        result = subprocess.run(
            run.command(), stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, check=False
        )
    spent += time.perf_counter() - start
    (ckpt_dir / SECONDS_RECORD).write_text(f"{spent!r}\n")
    if result.returncode != 0 or latest_checkpoint(ckpt_dir) != final:
        raise MMIFError(f"training into {ckpt_dir} failed (exit code {result.returncode}); see {log}")
    return final, spent


def train_method(name: str, ckpt_dir: str | Path, budget: TrainingBudget, inputs: BundleInputs) -> tuple[Path, float]:
    """Train comparison method ``name`` through the bundle (:func:`train_bundle`).

    Raises:
        ValueError: unknown method. MMIFError: training failed (the message names the log file).
    """
    if name not in COMPARISON_METHODS:
        raise ValueError(f"unknown comparison method {name!r}; choose from {', '.join(COMPARISON_METHODS)}")
    return train_bundle(BundleRun(bundle_config_files(name), Path(ckpt_dir), budget, inputs))


def train_mmif_net(
    autoencoder: BundleRun,
    fusion_dir: str | Path | None,
    fusion_budget: TrainingBudget,
    label: str = "MMIF-Net",
    fusion_overrides: Mapping[str, object] | None = None,
    fusion_configs: Sequence[str | Path] = (),
) -> tuple[Path, float]:
    """MMIF-Net's two training stages through the bundle (:func:`train_bundle`), each resumable.

    Stage 1 is ``autoencoder``, the paper's autoencoder task (``train.json``; its overrides may set λ as
    ``ssim_weight``). Stage 2, where ``fusion_dir`` is given, fine-tunes with the fusion loss (``train_fusion.json``,
    then ``fusion_configs``; FA alone unless the overrides set ``trainable_modules``) from stage 1's last checkpoint
    into ``fusion_dir``, on the same inputs, with stage 1's overrides except ``ssim_weight`` (e.g. network
    switches) plus ``fusion_overrides`` (e.g. the fusion loss weights). Returns the last stage's final checkpoint
    and the wall seconds of both.

    Raises:
        MMIFError: a stage failed (the message names its log file).
    """
    print(f"{label}: autoencoder ({autoencoder.budget.describe()})", flush=True)
    weights, seconds = train_bundle(autoencoder)
    if fusion_dir is not None:
        configs = BUNDLE_DIR / "configs"
        shared = {k: v for k, v in autoencoder.overrides.items() if k != "ssim_weight"}
        overrides = {**shared, **(fusion_overrides or {})}
        trained = "FA" if "trainable_modules" not in overrides else overrides["trainable_modules"]
        trained = "the whole network" if trained == "$None" else trained
        print(f"{label}: fusion loss on {trained} ({fusion_budget.describe()})", flush=True)
        fusion = BundleRun(
            [configs / "train.json", configs / "train_fusion.json", *fusion_configs], Path(fusion_dir), fusion_budget,
            autoencoder.inputs, {**overrides, "pretrained_file": weights},
        )  # fmt: skip
        weights, fine_tuning = train_bundle(fusion)
        seconds += fine_tuning
    return weights, seconds
