"""``mmif compare``: train (or load) the compared networks, fuse the validation split with every method, score
it, time it, and write ``docs/results.md`` with its figure.

Everything in the document is computed by :func:`run_comparison`; what it prints is what it writes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from mmif_monai.fusion.classical import CLASSICAL_METHODS
from mmif_monai.fusion.methods import NETWORK_METHOD
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, FusionPair, list_pairs, split_pairs
from mmif_monai.io.markdown import markdown_rows
from mmif_monai.io.paths import DEFAULT_DATASET_DIR
from mmif_monai.metrics.report import evaluate_folders, markdown_table, summarise, write_evaluation
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, weights_digest
from mmif_monai.studies.documents import generated_preamble, machine_description, report_finished, write_document
from mmif_monai.studies.fusions import fuse_missing, fuse_with_methods, save_fusion_grid, stage_sources
from mmif_monai.studies.methods import COMPARISON_METHODS, MMIF_NET_TITLE, load_method, method_title
from mmif_monai.studies.tables import Table
from mmif_monai.studies.timing import cpu_ms_per_pair, parameter_count
from mmif_monai.studies.training import (
    BundleInputs,
    TrainingBudget,
    check_budget_record,
    train_method,
    write_budget_record,
)

__all__ = ["ComparisonSettings", "PAIR_TYPE_TITLES", "data_options", "run_comparison", "validation_pairs"]

#: pair types in the order of the paper's tables (Table 2: MRI-PET, Table 3: MRI-CT), then MRI-SPECT
PAIR_TYPE_TITLES = {
    "mri_pet": "MRI–PET (the paper's Table 2)",
    "mri_ct": "MRI–CT (the paper's Table 3)",
    "mri_spect": "MRI–SPECT (not in the paper's tables)",
}
#: the fusion rules a released network is run with, as (label, constructor options): DenseFuse with its paper's
#: two; the others with their own (IFCNN-MAX: max)
RELEASED_RULES: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "densefuse": (("l1 rule", {"fusion_rule": "l1"}), ("addition rule", {"fusion_rule": "addition"})),
}


@dataclass
class ComparisonSettings:
    """What one comparison run does; see ``mmif compare --help``."""

    out_dir: Path
    doc: Path
    figure: Path
    dataset_dir: Path
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    methods: Sequence[str] = tuple(COMPARISON_METHODS)
    #: method -> weights file to load instead of training (this package's or the authors', converted)
    weights: Mapping[str, Path] = field(default_factory=dict)
    #: method -> the authors' released weights, scored in rows of their own beside the trained networks
    released: Mapping[str, Path] = field(default_factory=dict)
    limit: int | None = None
    validation_cases: tuple[int, ...] = DEFAULT_VALIDATION_CASES
    timing_threads: int = 1
    timing_repeats: int = 5
    device: str = "cpu"

    def command_line(self) -> str:
        """The ``mmif compare`` command that repeats this run (the dataset folder only when not the default)."""
        b = self.budget
        parts = [
            "mmif compare", f"-o {self.out_dir}", f"--doc {self.doc}", f"--figure {self.figure}",
            f"--epochs {b.epochs}", f"--iterations-per-epoch {b.iterations_per_epoch}", f"--batch-size {b.batch_size}",
            f"--crop-size {b.crop_size}", f"--learning-rate {b.learning_rate:g}",
            f"--timing-threads {self.timing_threads}", f"--timing-repeats {self.timing_repeats}",
        ]  # fmt: skip
        if list(self.methods) != list(COMPARISON_METHODS):
            parts.append("--methods " + " ".join(self.methods))
        if self.weights:
            parts.append("--weights " + " ".join(f"{m}={p}" for m, p in self.weights.items()))
        if self.released:
            parts.append("--released " + " ".join(f"{m}={p}" for m, p in self.released.items()))
        parts += data_options(self.dataset_dir, self.limit, self.validation_cases, self.device)
        return " ".join(parts)


def data_options(dataset_dir: str | Path, limit: int | None, validation_cases: Sequence[int], device: str) -> list[str]:
    """The command-line options of a study's data and device, where they differ from the defaults."""
    options = []
    if Path(dataset_dir).resolve() != DEFAULT_DATASET_DIR.resolve():
        options.append(f"--dataset-dir {dataset_dir}")
    if limit is not None:
        options.append(f"--limit {limit}")
    if tuple(validation_cases) != DEFAULT_VALIDATION_CASES:
        options.append("--validation-cases " + " ".join(map(str, validation_cases)))
    if device != "cpu":
        options.append(f"--device {device}")
    return options


def _check(settings: ComparisonSettings) -> None:
    """Every input checked before anything is trained or written."""
    unknown = [m for m in [*settings.methods, *settings.weights, *settings.released] if m not in COMPARISON_METHODS]
    if unknown:
        raise ValueError(f"unknown comparison method(s) {unknown}; choose from {', '.join(COMPARISON_METHODS)}")
    for name, path in [*settings.weights.items(), *settings.released.items()]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: weights file for {name} not found")
    if settings.limit is not None and settings.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {settings.limit}")
    check_budget_record(settings.out_dir, settings.budget.as_dict())


def validation_pairs(
    dataset_dir: str | Path, validation_cases: Sequence[int], limit: int | None = None
) -> dict[str, list[FusionPair]]:
    """The validation split by pair type, in :data:`PAIR_TYPE_TITLES` order (at most ``limit`` of each).

    Raises:
        ValueError: if there are no validation pairs.
    """
    _, validation = split_pairs(list_pairs(dataset_dir), tuple(validation_cases))
    by_type = {t: [p for p in validation if p.pair_type == t][:limit] for t in PAIR_TYPE_TITLES}
    by_type = {t: pairs for t, pairs in by_type.items() if pairs}
    if not by_type:
        raise ValueError(f"{dataset_dir}: no validation pairs (cases {list(validation_cases)})")
    return by_type


def _networks(settings: ComparisonSettings) -> tuple[dict[str, Path], dict[str, float]]:
    """Each compared network's weights file, training the ones without given weights; and training seconds."""
    weights: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    for name in settings.methods:
        if name in settings.weights:
            weights[name] = Path(settings.weights[name])
            print(f"{COMPARISON_METHODS[name].title}: weights {weights[name]}")
            continue
        ckpt_dir = settings.out_dir / "checkpoints" / name
        print(f"{COMPARISON_METHODS[name].title}: training ({settings.budget.describe()}) into {ckpt_dir}", flush=True)
        inputs = BundleInputs(Path(settings.dataset_dir), tuple(settings.validation_cases), settings.device)
        weights[name], seconds[name] = train_method(name, ckpt_dir, settings.budget, inputs)
        print(f"{COMPARISON_METHODS[name].title}: {weights[name]} ({seconds[name] / 60:.1f} min)", flush=True)
    return weights, seconds


def _compared(networks: Mapping[str, Path]) -> list[str]:
    """The methods of every table, in their order: the classical rules, the compared networks, MMIF-Net."""
    return [*CLASSICAL_METHODS, *networks, NETWORK_METHOD]


def released_rows(released: Mapping[str, Path]) -> dict[str, tuple[str, Path, dict[str, str]]]:
    """Row title -> (method, released weights file, constructor options) for every released network and rule."""
    rows = {}
    for name, weights in released.items():
        title = f"{COMPARISON_METHODS[name].title} (authors' weights"
        for label, options in RELEASED_RULES.get(name, (("", {}),)):
            rows[f"{title}, {label})" if label else f"{title})"] = (name, Path(weights), options)
    return rows


def _fuse(
    pairs: Sequence[FusionPair], fused_root: Path, settings: ComparisonSettings, networks: Mapping[str, Path]
) -> dict[str, Path]:
    """Fuse ``pairs`` with every method; display title -> folder. Existing results of the same weights are reused."""
    device = settings.device
    folders = fuse_with_methods(pairs, _compared(networks), fused_root, device=device, weights=networks)
    titled = {method_title(name): folder for name, folder in folders.items()}
    mmif_net = titled.pop(MMIF_NET_TITLE)
    return {**titled, **fuse_released(pairs, fused_root, settings.released, device), MMIF_NET_TITLE: mmif_net}


def fuse_released(
    pairs: Sequence[FusionPair], fused_root: Path, released: Mapping[str, Path], device: str = "cpu"
) -> dict[str, Path]:
    """Fuse ``pairs`` with every released network and rule (:func:`released_rows`) under ``fused_root``, one folder
    per weights digest and rule (existing results reused); row title -> folder."""
    folders = {}
    for title, (name, weights, options) in released_rows(released).items():
        rule = "-".join(options.values()) or "own"
        folders[title] = fuse_missing(
            partial(load_method, name, weights, device, **options),
            pairs, fused_root / f"{name}-released-{rule}-{weights_digest(weights)}", device,
        )  # fmt: skip
    return folders


def _standing(results: Mapping[str, Mapping[str, Sequence[float]]]) -> Table:
    """Per metric, MMIF-Net's rank among all methods and who scores above it (means; higher is better)."""
    summary = summarise(results)
    ours = summary[MMIF_NET_TITLE]
    table = Table(["metric", "MMIF-Net", "rank", "methods with a higher mean"])
    for metric, (mean, _) in ours.items():
        if math.isnan(mean):
            continue
        above = sorted(
            ((m, s[metric][0]) for m, s in summary.items() if m != MMIF_NET_TITLE and s[metric][0] > mean),
            key=lambda item: -item[1],
        )
        names = ", ".join(f"{m} ({v:.4f})" for m, v in above) or "none: best"
        table.add(metric, f"{mean:.4f}", f"{len(above) + 1}/{len(summary)}", names)
    return table


def _timing_table(networks: Mapping[str, Path], seconds: Mapping[str, float], settings: ComparisonSettings) -> Table:
    """Parameters, CPU ms/pair and training time of every method, one row each (printed as measured)."""
    table = Table(["method", "parameters", "CPU ms/pair (median)", "training time in this run"])
    for name in _compared(networks):
        if name in networks:
            trained = f"{seconds[name] / 60:.1f} min" if name in seconds else "given weights"
        else:
            trained = "none (classical)" if name in CLASSICAL_METHODS else "shipped weights (other budget)"
        fuse, _ = load_method(name, networks.get(name), "cpu")
        ms = cpu_ms_per_pair(fuse, threads=settings.timing_threads, repeats=settings.timing_repeats)
        table.add(method_title(name), f"{parameter_count(fuse):,}", f"{ms:.1f}", trained)
        print(markdown_rows(table.columns, table.rows[-1:])[-1], flush=True)  # the document's row, as measured
    return table


def run_comparison(settings: ComparisonSettings) -> str:
    """Run the whole comparison and write ``settings.doc`` (and its figure); returns the document."""
    start = time.perf_counter()
    _check(settings)
    pairs = validation_pairs(settings.dataset_dir, settings.validation_cases, settings.limit)
    write_budget_record(settings.out_dir, settings.budget.as_dict())
    networks, seconds = _networks(settings)

    sections: list[str] = []
    folders: dict[str, dict[str, Path]] = {}
    for pair_type, type_pairs in pairs.items():
        out = settings.out_dir / pair_type
        anatomical, functional = stage_sources(type_pairs, out / "sources")
        folders[pair_type] = _fuse(type_pairs, out / "fused", settings, networks)
        results = evaluate_folders(folders[pair_type], anatomical, functional, device=settings.device)
        write_evaluation(results, out / "metrics", anatomical, functional, overwrite=True)
        published = evaluate_folders(
            folders[pair_type], anatomical, functional, device=settings.device, protocol="published"
        )
        write_evaluation(
            published, out / "metrics-published", anatomical, functional, overwrite=True, protocol="published"
        )
        standing = _standing(results).markdown()
        section = (
            f"## {PAIR_TYPE_TITLES[pair_type]}: {len(type_pairs)} pairs\n\n{markdown_table(results, 'literature')}\n"
            f"Where MMIF-Net stands on {PAIR_TYPE_TITLES[pair_type].split(' (')[0]} (per metric, by mean):\n\n"
            f"{standing}\nThe same fusions under the published protocol (docs/metrics.md):\n\n"
            f"{markdown_table(published, 'literature', 'published')}"
        )
        print(section, flush=True)
        sections.append(section)

    # the middle validation pair of each type
    save_fusion_grid([p[len(p) // 2] for p in pairs.values()], folders, settings.figure)
    print("size and speed:", flush=True)
    timing = _timing_table(networks, seconds, settings).markdown()
    doc = write_document(settings.doc, _document(settings, pairs, sections, timing))
    methods = len(_compared(networks)) + len(released_rows(settings.released))
    count = sum(len(p) for p in pairs.values())
    report_finished(f"compared {methods} methods", count, start, [settings.doc, settings.figure])
    return doc


def _document(
    settings: ComparisonSettings, pairs: Mapping[str, Sequence[FusionPair]], sections: Sequence[str], timing: str
) -> list[str]:
    trained = [COMPARISON_METHODS[n].title for n in settings.methods if n not in settings.weights]
    loaded = [
        f"{COMPARISON_METHODS[n].title} ({settings.weights[n]})" for n in settings.methods if n in settings.weights
    ]
    counts = ", ".join(f"{len(p)} {t}" for t, p in pairs.items())
    figure = os.path.relpath(settings.figure, settings.doc.parent)
    return [
        *generated_preamble(
            "MMIF-Net against DenseFuse, IFCNN, NestFuse, FusionDN, FusionGAN and classical baselines",
            settings.command_line(),
            "How each compared network was built from its paper, and where it deviates:"
            " [comparison.md](comparison.md).",
        ),
        "## Setup",
        "",
        f"- **Data:** the validation split (held-out atlas cases {', '.join(map(str, settings.validation_cases))};"
        f' docs/method.md, "Data split"): {counts} pairs'
        + (f" (the first {settings.limit} of each type only)" if settings.limit else "")
        + ". Colour sources and results are scored on their luminance, fused images min-max stretched, SSIM by"
        " the literature protocol (docs/metrics.md).",
        f"- **Compared networks trained here** ({', '.join(trained) or 'none'}): each through the MMIF-Net bundle"
        " (`bundles/mmif_net/configs/train.json` + `bundles/comparison/configs/<method>.json`) on the training"
        f" split with one budget for all: {settings.budget.describe()}. The last checkpoint is used; nothing"
        " is selected on the validation split. This budget is tiny next to the papers' (tens of thousands of"
        " iterations on GPUs): the numbers rank *equally short* trainings, not the published models.",
        *([f"- **Loaded from weights:** {', '.join(loaded)}."] if loaded else []),
        *(
            [
                f"- **The authors' released weights** ({', '.join(f'`{p}`' for p in settings.released.values())},"
                ' not part of this repository; docs/comparison.md, "Loading the authors\' weights"): rows'
                f" {', '.join(f'“{t}”' for t in released_rows(settings.released))}, as released, not retrained;"
                " DenseFuse with both of its paper's rules."
            ]
            if settings.released
            else []
        ),
        "- **MMIF-Net** uses the bundle's shipped weights (`bundles/mmif_net/models/model.pt`, sha256"
        f" {weights_digest(DEFAULT_WEIGHTS)}…), trained under its own, larger budget and not retrained here;"
        " bundles/mmif_net/docs/README.md says how, and whether anything was selected on this split.",
        f"- **Classical baselines:** {', '.join(CLASSICAL_METHODS)} (`mmif_monai.fusion.classical`).",
        "- **No tuning on these numbers:** loss weights are the papers' (or their releases'); the budget was"
        " chosen by measured CPU time before any of these scores existed.",
        "",
        *sections,
        "## Size and speed (the paper's Table 5, in spirit)",
        "",
        f"Parameters: learnable parameters (MMIF-Net's fixed LatLRR projection buffer not counted). CPU ms/pair:"
        f" median of {settings.timing_repeats} fusions of one 256×256 grey pair after one warm-up, "
        f"{settings.timing_threads} torch thread(s), on this machine ({machine_description()}; shared with"
        " other work, so timings are indicative); file I/O and colour conversion excluded. Training time: wall"
        " time of the bundle training (kept with the checkpoints when a later run reuses them).",
        "",
        timing,
        "",
        "## Figure",
        "",
        f"The middle validation pair of each type, fused by every method: ![comparison grid]({figure})",
        "",
    ]
