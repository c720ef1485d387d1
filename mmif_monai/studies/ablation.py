"""The paper's ablation (its Table 4: multi-scale layer MSL, self-attention SA, learned fusion FA) and a sweep of
the SSIM weight λ, each variant trained through the MMIF-Net bundle under one budget and scored on the
validation split (``scripts/ablation.py`` writes ``docs/ablation.md``).

Every variant is two bundle runs at most, in the paper's configuration (``paper.json`` over ``train.json``): the
paper's autoencoder task (with the variant's network switches and λ), then, when FA is on, the fusion-loss
fine-tuning of FA alone (``train_fusion.json``) from that autoencoder. FA is not on the reconstruction path, so
variants that differ only in FA share their autoencoder; "w/o FA" fuses with the l1 rule instead. With several
seeds (the bundle's ``seed``: weight initialisation, crops and augmentation) every variant is trained once per seed,
and the document adds the spread of the per-seed means, so that a gap between rows can be read against run-to-run
variation.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, FusionPair
from mmif_monai.io.paths import BUNDLE_DIR, DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.metrics.report import Results, evaluate_folders, markdown_table, summarise
from mmif_monai.networks.inference import prepare_for_inference
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, load_mmif_net, read_weights, weights_digest
from mmif_monai.studies.comparison import PAIR_TYPE_TITLES, data_options, validation_pairs
from mmif_monai.studies.documents import generated_preamble, machine_description, report_finished, write_document
from mmif_monai.studies.fusions import fuse_missing, stage_sources
from mmif_monai.studies.tables import Table
from mmif_monai.studies.training import (
    BundleInputs,
    BundleRun,
    TrainingBudget,
    check_budget_record,
    train_mmif_net,
    write_budget_record,
)

__all__ = ["ABLATION_VARIANTS", "AblationSettings", "AblationVariant", "LAMBDA_SWEEP", "run_ablation"]

#: the SSIM weights DenseFuse swept (Li & Wu, IEEE TIP 2019, Sec. IV-B: 1, 10, 100, 1000); the paper's is 10
LAMBDA_SWEEP = (1.0, 10.0, 100.0, 1000.0)
PAPER_LAMBDA = 10.0
#: the columns of the per-pair-type tables: the quality target's three metrics
TARGET_METRICS = ("Qabf", "VIF", "SSIM")


@dataclass(frozen=True)
class AblationVariant:
    """MMIF-Net with some modules switched off (``MMIFNet``'s ``msl``, ``sa``, ``fa``) and an SSIM weight λ."""

    title: str
    msl: bool = True
    sa: bool = True
    fa: bool = True
    ssim_weight: float = PAPER_LAMBDA

    @property
    def autoencoder(self) -> str:
        """Folder name of the autoencoder run: shared by variants that differ only in FA."""
        return f"autoencoder-msl{int(self.msl)}-sa{int(self.sa)}-lambda{self.ssim_weight:g}"

    @property
    def switches(self) -> dict[str, bool]:
        return {"msl": self.msl, "sa": self.sa, "fa": self.fa}


#: the ablation rows, from the DenseFuse-like base to the full network
ABLATION_VARIANTS = (
    AblationVariant("base (no MSL, SA, FA)", msl=False, sa=False, fa=False),
    AblationVariant("w/o MSL", msl=False),
    AblationVariant("w/o SA", sa=False),
    AblationVariant("w/o FA (l1 rule)", fa=False),
    AblationVariant("MMIF-Net (MSL + SA + FA)"),
)


def lambda_variants(lambdas: Sequence[float]) -> list[AblationVariant]:
    """The λ sweep: the full architecture with the l1 rule, so that only the autoencoder's loss changes."""
    return [AblationVariant(f"λ = {w:g}", fa=False, ssim_weight=w) for w in lambdas]


@dataclass
class AblationSettings:
    """What one ablation run does; see ``python scripts/ablation.py --help``."""

    out_dir: Path
    doc: Path
    dataset_dir: Path = DEFAULT_DATASET_DIR
    autoencoder_budget: TrainingBudget = field(
        default_factory=lambda: TrainingBudget(
            epochs=4, iterations_per_epoch=75, batch_size=8, crop_size=96, learning_rate=2e-3
        )
    )
    fusion_budget: TrainingBudget = field(
        default_factory=lambda: TrainingBudget(
            epochs=2, iterations_per_epoch=25, batch_size=8, crop_size=96, learning_rate=1e-3
        )
    )
    variants: Sequence[AblationVariant] = ABLATION_VARIANTS
    lambdas: Sequence[float] = LAMBDA_SWEEP
    limit: int | None = None
    validation_cases: tuple[int, ...] = DEFAULT_VALIDATION_CASES
    device: str = "cpu"
    seeds: Sequence[int] = (0,)

    @property
    def pools_seeds(self) -> bool:
        """Whether the tables pool several seeds (and add their spread)."""
        return len(self.seeds) > 1

    def command_line(self) -> str:
        """The ``scripts/ablation.py`` command that repeats this run (non-default options only, budgets always)."""
        a, f = self.autoencoder_budget, self.fusion_budget
        parts = [
            "python scripts/ablation.py", f"-o {self.out_dir}", f"--doc {self.doc}",
            f"--epochs {a.epochs}", f"--iterations-per-epoch {a.iterations_per_epoch}", f"--batch-size {a.batch_size}",
            f"--crop-size {a.crop_size}", f"--learning-rate {a.learning_rate:g}",
            f"--fusion-epochs {f.epochs}", f"--fusion-iterations-per-epoch {f.iterations_per_epoch}",
            f"--fusion-learning-rate {f.learning_rate:g}",
            "--lambdas " + " ".join(f"{w:g}" for w in self.lambdas),
            "--seeds " + " ".join(map(str, self.seeds)),
        ]  # fmt: skip
        return " ".join(parts + data_options(self.dataset_dir, self.limit, self.validation_cases, self.device))

    def record(self) -> dict:
        return {"autoencoder": self.autoencoder_budget.as_dict(), "fusion": self.fusion_budget.as_dict()}


def _check(settings: AblationSettings) -> None:
    """Every input checked before anything is trained or written."""
    if settings.limit is not None and settings.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {settings.limit}")
    if not settings.lambdas or any(w < 0 for w in settings.lambdas):
        raise ValueError(f"--lambdas needs one or more non-negative SSIM weights, got {list(settings.lambdas)}")
    if not settings.seeds or any(s < 0 for s in settings.seeds) or len(set(settings.seeds)) != len(settings.seeds):
        raise ValueError(f"--seeds needs one or more distinct non-negative seeds, got {list(settings.seeds)}")
    check_budget_record(settings.out_dir, settings.record())


def _train(variant: AblationVariant, seed: int, settings: AblationSettings) -> tuple[Path, float]:
    """The variant's weights (autoencoder, then FA fine-tuning when FA is on) for one seed and the training seconds."""
    checkpoints = settings.out_dir / "checkpoints" / f"seed{seed}"
    switches = {"network_def#msl": variant.msl, "network_def#sa": variant.sa, "seed": seed}
    # the paper's configuration is what the ablation varies (paper.json: its widths and LatLRR split), both stages
    paper = BUNDLE_DIR / "configs" / "paper.json"
    autoencoder = BundleRun(
        [BUNDLE_DIR / "configs" / "train.json", paper],
        checkpoints / variant.autoencoder,
        settings.autoencoder_budget,
        BundleInputs(Path(settings.dataset_dir), tuple(settings.validation_cases), settings.device),
        {**switches, "ssim_weight": variant.ssim_weight},
    )
    return train_mmif_net(
        autoencoder,
        checkpoints / f"{variant.autoencoder}-fa" if variant.fa else None,
        settings.fusion_budget,
        label=f"{variant.title} (seed {seed})",
        fusion_configs=[paper],
    )


def _fuse_and_score(
    variants: Mapping[str, tuple[AblationVariant, Path]],
    pairs: Mapping[str, Sequence[FusionPair]],
    settings: AblationSettings,
) -> dict[str, Results]:
    """Every variant's fusions of the validation pairs, scored; pair type -> results by variant title."""

    def load(variant: AblationVariant, weights: Path) -> tuple[FuseFn, str]:
        network = load_mmif_net(weights, settings.device, **variant.switches).network
        return prepare_for_inference(network), f"{variant.title} ({weights})"

    scores: dict[str, Results] = {}
    for pair_type, type_pairs in pairs.items():
        out = settings.out_dir / pair_type
        anatomical, functional = stage_sources(type_pairs, out / "sources")
        folders = {
            title: fuse_missing(
                partial(load, variant, weights),
                type_pairs,
                out / "fused" / f"{variant.autoencoder}-fa{int(variant.fa)}-{weights_digest(weights)}",
                settings.device,
            )
            for title, (variant, weights) in variants.items()
        }
        scores[pair_type] = evaluate_folders(folders, anatomical, functional, device=settings.device)
    return scores


def _pooled(scores: Iterable[Results], titles: Sequence[str]) -> Results:
    """Each variant's per-image values over all the given results together (pair types, seeds)."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for title in titles:
        pooled[title] = {}
        for results in scores:
            for metric, values in results[title].items():
                pooled[title].setdefault(metric, []).extend(values)
    return pooled


def _per_type_table(scores: Mapping[int, Mapping[str, Results]], titles: Sequence[str]) -> str:
    """Means of the target metrics per pair type (over images and seeds), one row per variant."""
    types = list(next(iter(scores.values())))
    header = ["variant"] + [f"{m} {PAIR_TYPE_TITLES[t].split(' (')[0]}" for m in TARGET_METRICS for t in types]
    table = Table(header)
    summaries = {t: summarise(_pooled([by_type[t] for by_type in scores.values()], titles)) for t in types}
    for title in titles:
        table.add(title, *(f"{summaries[t][title][m][0]:.4f}" for m in TARGET_METRICS for t in types))
    return table.markdown()


def _seed_spread_table(scores: Mapping[int, Mapping[str, Results]], titles: Sequence[str]) -> str:
    """Per variant and metric: the mean and sample standard deviation over seeds of the per-seed means of all
    validation pairs, and their range."""
    metrics = (*TARGET_METRICS, "MI")
    per_seed = [summarise(_pooled(by_type.values(), titles)) for by_type in scores.values()]
    table = Table(["variant", *metrics])
    for title in titles:
        cells = []
        for metric in metrics:
            means = [summary[title][metric][0] for summary in per_seed]
            cells.append(
                f"{statistics.mean(means):.4f} ± {statistics.stdev(means):.4f} ({min(means):.4f}–{max(means):.4f})"
            )
        table.add(title, *cells)
    return table.markdown()


def _settings_table(variants: Mapping[str, AblationVariant], minutes: Mapping[str, float]) -> str:
    table = Table(["variant", "MSL", "SA", "FA (✗: l1 rule)", "λ", "training (min)"])
    mark = {True: "✓", False: "✗"}
    for title, v in variants.items():
        table.add(title, mark[v.msl], mark[v.sa], mark[v.fa], f"{v.ssim_weight:g}", f"{minutes[title]:.1f}")
    return table.markdown()


def run_ablation(settings: AblationSettings) -> str:
    """Train every variant, fuse and score the validation split, and write ``settings.doc``; returns the document."""
    start = time.perf_counter()
    _check(settings)
    pairs = validation_pairs(settings.dataset_dir, settings.validation_cases, settings.limit)
    write_budget_record(settings.out_dir, settings.record())

    studies = {"ablation": list(settings.variants), "lambda": lambda_variants(settings.lambdas)}
    variants = {v.title: v for study in studies.values() for v in study}
    trained: dict[int, dict[str, tuple[AblationVariant, Path]]] = {seed: {} for seed in settings.seeds}
    seconds: dict[str, list[float]] = {title: [] for title in variants}
    for seed in settings.seeds:
        for title, variant in variants.items():
            weights, spent = _train(variant, seed, settings)
            trained[seed][title] = (variant, weights)
            seconds[title].append(spent)
    scores = {seed: _fuse_and_score(trained[seed], pairs, settings) for seed in settings.seeds}
    minutes = {title: statistics.mean(spent) / 60 for title, spent in seconds.items()}

    sections = []
    several = settings.pools_seeds
    for study, heading in (
        ("ablation", "Ablation (the paper's Table 4)"),
        ("lambda", "λ sweep (SSIM weight of the autoencoder loss)"),
    ):
        titles = [v.title for v in studies[study]]
        pooled_rows = [row for by_type in scores.values() for row in by_type.values()]
        section = (
            f"## {heading}\n\n{_settings_table({t: variants[t] for t in titles}, minutes)}\n"
            + (
                f"Spread over the {len(settings.seeds)} seeds (all validation pairs; mean ± standard deviation of the"
                f" per-seed means, and their range):\n\n{_seed_spread_table(scores, titles)}\n"
                if several
                else ""
            )
            + f"All validation pairs together{' (each image once per seed)' if several else ''}:\n\n"
            f"{markdown_table(_pooled(pooled_rows, titles), 'literature')}\n"
            f"Per pair type (means{' over images and seeds' if several else ''}):\n\n{_per_type_table(scores, titles)}"
        )
        print(section, flush=True)
        sections.append(section)
    labelled = {
        f'"{title}"' + (f" (seed {seed})" if several else ""): weights
        for seed, rows in trained.items()
        for title, (_, weights) in rows.items()
    }
    doc = write_document(settings.doc, _document(settings, pairs, sections, labelled))
    count = sum(len(p) for p in pairs.values())
    seeds = f"{len(settings.seeds)} seed{'s' if len(settings.seeds) > 1 else ''}"
    report_finished(f"trained and scored {len(variants)} variants ({seeds})", count, start, [settings.doc])
    return doc


def _shipped_weights_row(trained: Mapping[str, Path]) -> str:
    """Which row, if any, holds the parameters the bundle ships (compared tensor by tensor); ``trained`` maps row
    labels to weights files."""
    if DEFAULT_WEIGHTS.is_file():
        shipped = read_weights(DEFAULT_WEIGHTS)
        for label, weights in trained.items():
            candidate = read_weights(weights)
            if candidate.keys() == shipped.keys() and all(torch.equal(candidate[k], shipped[k]) for k in shipped):
                return f"The bundle's shipped weights (`{DEFAULT_WEIGHTS.relative_to(REPO_ROOT)}`) are the row {label}."
    return "The bundle's shipped weights (bundle README) are not among these rows."


def _document(
    settings: AblationSettings,
    pairs: Mapping[str, Sequence[FusionPair]],
    sections: Sequence[str],
    trained: Mapping[str, Path],
) -> list[str]:
    counts = ", ".join(f"{len(p)} {t}" for t, p in pairs.items())
    readme = os.path.relpath(BUNDLE_DIR / "docs" / "README.md", settings.doc.parent)
    return [
        *generated_preamble(
            "MMIF-Net ablation and λ sweep",
            settings.command_line(),
            f"What the numbers say: [the bundle README]({readme}).",
        ),
        "## Setup",
        "",
        f"- **Data:** trained on the training split, scored on the validation split (held-out atlas cases"
        f" {', '.join(map(str, settings.validation_cases))}): {counts} pairs"
        + (f" (the first {settings.limit} of each type only)" if settings.limit else "")
        + ". Colour sources and results are scored on their luminance, fused images min-max stretched, SSIM by"
        " the literature protocol (docs/metrics.md).",
        "- **Training, the same for every variant, from scratch:** the paper's autoencoder task"
        f" (`train.json`, loss MSE + λ·(1 − SSIM)) for {settings.autoencoder_budget.describe()}; with FA on,"
        f" then the fusion-loss fine-tuning of FA alone (`train_fusion.json`) for {settings.fusion_budget.describe()}."
        " Variants that differ only in FA share their autoencoder. The last checkpoint is used; nothing is"
        " selected on the validation split, and no setting was tuned on these numbers.",
        f"- **Seeds:** {', '.join(map(str, settings.seeds))}. The bundle's `seed` (MONAI's `set_determinism`) sets"
        " the weight initialisation, the crops and the augmentation; every variant is trained once per seed"
        + (
            ", the tables pool the seeds (each validation image once per seed), and training minutes are means per"
            " seed."
            if settings.pools_seeds
            else ". One seed says nothing of the run-to-run spread; `--seeds 0 1 2` measures it."
        ),
        "- **The λ sweep** keeps the full architecture and fuses with the l1 rule, so that only the"
        " autoencoder's loss changes (λ = 10 is the paper's and the bundle's default).",
        "- **Budget:** far below the paper's; the tables rank equally short trainings. "
        + _shipped_weights_row(trained),
        f"- **Machine:** {machine_description()}, device {settings.device}; training minutes are wall time.",
        "",
        *sections,
    ]
