"""Comparing candidate weights for the shipped model (``scripts/compare_candidates.py``): each candidate against the
quality targets on the validation split and on its shifted variant, next to what a reader sees of its colours and
bone, in one table, so that the one shipped is chosen on all of it at once; and, where given, against the peers'
released weights (DenseFuse, IFCNN: the target metrics on which the candidate's mean is at least theirs).

Per candidate and pair type: the targets met under the published protocol (MMIF-Net's mean ÷ pixel-max's against
CDDFuse's ratio, :func:`~mmif_monai.studies.validation.target_ratio_table`) on the split as it is and on its
shifted variant (:func:`~mmif_monai.studies.validation.shift_anatomical`); the colour fidelity of its fused
MRI–PET and MRI–SPECT images (ΔE00, share moved to another colour-scale step) and the share of the CT's bone it
greys in MRI–CT (:mod:`mmif_monai.studies.colour`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmif_monai.fusion.methods import NETWORK_METHOD
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, FusionPair
from mmif_monai.io.paths import DEFAULT_DATASET_DIR
from mmif_monai.metrics.bone import BONE_BOUND
from mmif_monai.metrics.colour import AANLIB_COLOUR_SCALES, COLOUR_BOUND
from mmif_monai.metrics.report import evaluate_folders, summarise
from mmif_monai.networks.pretrained import weights_digest
from mmif_monai.studies.colour import score_bone_folder, score_folder
from mmif_monai.studies.comparison import fuse_released, validation_pairs
from mmif_monai.studies.documents import generated_preamble, write_document
from mmif_monai.studies.fusions import fuse_with_methods, stage_sources
from mmif_monai.studies.tables import Table
from mmif_monai.studies.validation import (
    CDDFUSE_RATIO_TARGETS,
    TARGET_REFERENCE,
    shift_anatomical,
)

__all__ = ["CandidateScores", "CandidateSettings", "released_means", "score_candidate", "run_candidate_comparison"]

#: the two variants of the validation split every candidate is scored on
VARIANTS = ("validation", "shifted")


@dataclass
class CandidateSettings:
    """What one comparison does; see ``python scripts/compare_candidates.py --help``."""

    #: candidate name -> weights file (a state dict or training checkpoint)
    candidates: Mapping[str, Path]
    out_dir: Path
    doc: Path
    dataset_dir: Path = DEFAULT_DATASET_DIR
    validation_cases: Sequence[int] = DEFAULT_VALIDATION_CASES
    limit: int | None = None
    device: str = "cpu"
    #: compared method -> the authors' released weights (``mmif compare --released``), scored beside the candidates
    released: Mapping[str, Path] = field(default_factory=dict)

    def command_line(self) -> str:
        given = " ".join(f"{name}={path}" for name, path in self.candidates.items())
        if self.released:
            given += " --released " + " ".join(f"{m}={p}" for m, p in self.released.items())
        return f"python scripts/compare_candidates.py {given}"


@dataclass
class CandidateScores:
    """One candidate's scores: per variant and pair type the targets met and the ratio per target metric, then its
    colour and bone fidelity on the split as it is."""

    weights: Path
    #: variant -> pair type -> (targets met, {metric: MMIF-Net ÷ pixel-max})
    targets: dict[str, dict[str, tuple[int, dict[str, float]]]] = field(default_factory=dict)
    #: variant -> pair type -> {metric: the candidate's mean}
    means: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    #: pair type -> (ΔE00 mean, worst step's mean ΔE00, share moved, colour bound met)
    colour: dict[str, tuple[float, float, float, bool]] = field(default_factory=dict)
    #: (share of bone pixels greyed, brightness kept, bone bound met)
    bone: tuple[float, float, bool] | None = None

    def met(self, variant: str) -> int:
        return sum(met for met, _ in self.targets.get(variant, {}).values())


def _target_scores(
    pairs: Sequence[FusionPair], weights: Path, out: Path, device: str
) -> tuple[dict[str, Path], dict[str, dict[str, float]]]:
    """Fuse ``pairs`` with the candidate and pixel-max under ``out`` and score them under the published protocol:
    the folders and ``{method: {metric: mean}}``."""
    anatomical, functional = stage_sources(pairs, out / "sources")
    folders = fuse_with_methods(
        pairs, [NETWORK_METHOD, TARGET_REFERENCE], out / "fused", device=device, weights={NETWORK_METHOD: weights}
    )
    results = evaluate_folders(folders, anatomical, functional, device=device, protocol="published")
    return folders, _means(results)


def _means(results: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, dict[str, float]]:
    """``{method: {metric: mean}}`` of per-image results."""
    return {method: {m: mean for m, (mean, _) in metrics.items()} for method, metrics in summarise(results).items()}


def _met(ratios: Mapping[str, float], pair_type: str) -> int:
    return sum(ratio >= CDDFUSE_RATIO_TARGETS[pair_type][metric] for metric, ratio in ratios.items())


def _variant_pairs(
    by_type: Mapping[str, Sequence[FusionPair]], variant: str, out_dir: Path
) -> dict[str, list[FusionPair]]:
    """The pairs of one variant per pair type (the shifted ones written under ``out_dir``)."""
    if variant == "shifted":
        return {t: shift_anatomical(pairs, out_dir / variant / "anatomical") for t, pairs in by_type.items()}
    return {t: list(pairs) for t, pairs in by_type.items()}


def released_means(
    released: Mapping[str, Path], by_type: Mapping[str, Sequence[FusionPair]], out_dir: Path, device: str = "cpu"
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """The released peers' means under the published protocol: variant -> pair type -> row title -> metric -> mean
    (rows as ``mmif compare --released`` names them, DenseFuse once per rule)."""
    means: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for variant in VARIANTS:
        means[variant] = {}
        for pair_type, pairs in _variant_pairs(by_type, variant, out_dir).items():
            out = out_dir / variant / pair_type
            anatomical, functional = stage_sources(pairs, out / "sources")
            folders = fuse_released(pairs, out / "fused", released, device)
            results = evaluate_folders(folders, anatomical, functional, device=device, protocol="published")
            means[variant][pair_type] = _means(results)
    return means


def _cached(weights: Path, by_type: Mapping[str, Sequence[FusionPair]], out_dir: Path) -> Path:
    """Where one candidate's scores on these pairs are kept: per weights digest and set of pairs."""
    pairs = hashlib.sha256(" ".join(f"{p.pair_type}/{p.name}" for ps in by_type.values() for p in ps).encode())
    return out_dir / "scores" / f"{weights_digest(weights)}-{pairs.hexdigest()[:12]}.json"


def score_candidate(
    weights: Path, by_type: Mapping[str, Sequence[FusionPair]], out_dir: Path, device: str = "cpu"
) -> CandidateScores:
    """Score ``weights`` on ``by_type`` (validation pairs per pair type) and its shifted variant; fused images,
    shifted sources and the scores are kept under ``out_dir`` per weights digest, so a rerun reuses them."""
    cache = _cached(weights, by_type, out_dir)
    if cache.is_file():
        record = json.loads(cache.read_text())
        return CandidateScores(
            weights,
            {v: {t: (met, ratios) for t, (met, ratios) in types.items()} for v, types in record["targets"].items()},
            record["means"],
            {t: tuple(c) for t, c in record["colour"].items()},
            None if record["bone"] is None else tuple(record["bone"]),
        )
    scores = CandidateScores(weights)
    for variant in VARIANTS:
        scores.targets[variant], scores.means[variant] = {}, {}
        for pair_type, pairs in _variant_pairs(by_type, variant, out_dir).items():
            folders, means = _target_scores(pairs, weights, out_dir / variant / pair_type, device)
            ratios = {
                m: means[NETWORK_METHOD][m] / means[TARGET_REFERENCE][m] for m in CDDFUSE_RATIO_TARGETS[pair_type]
            }
            scores.targets[variant][pair_type] = (_met(ratios, pair_type), ratios)
            scores.means[variant][pair_type] = means[NETWORK_METHOD]
            if variant != "validation":
                continue
            fused = folders[NETWORK_METHOD]
            if pair_type in AANLIB_COLOUR_SCALES:
                colour = score_folder(pairs, fused, AANLIB_COLOUR_SCALES[pair_type]).colour
                scores.colour[pair_type] = (
                    colour.overall.mean,
                    colour.worst_step_mean,
                    colour.overall.moved,
                    COLOUR_BOUND.met(colour),
                )
            elif pair_type == "mri_ct":
                bone = score_bone_folder(pairs, fused).bone
                scores.bone = (bone.greyed, bone.brightness, BONE_BOUND.met(bone))
    record = {"targets": scores.targets, "means": scores.means, "colour": scores.colour, "bone": scores.bone}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(record) + "\n")
    return scores


def _summary_table(scores: Mapping[str, CandidateScores]) -> Table:
    pair_types = list(CDDFUSE_RATIO_TARGETS)
    table = Table(
        [
            "candidate",
            "weights (sha256)",
            *(f"met, {variant} (CT / PET / SPECT)" for variant in VARIANTS),
            "PET ΔE00 mean / worst step / moved",
            "SPECT ΔE00 mean / worst step / moved",
            "CT bone greyed",
        ]
    )
    for name, score in scores.items():
        counts = [
            " / ".join(str(score.targets[v][t][0]) if t in score.targets[v] else "–" for t in pair_types)
            + f" ({score.met(v)})"
            for v in VARIANTS
        ]
        colours = []
        for pair_type in ("mri_pet", "mri_spect"):
            if pair_type in score.colour:
                mean, worst, moved, ok = score.colour[pair_type]
                colours.append(f"{mean:.2f} / {worst:.2f} / {100 * moved:.1f} % {'✓' if ok else '✗'}")
            else:
                colours.append("–")
        bone = "–" if score.bone is None else f"{100 * score.bone[0]:.1f} % {'✓' if score.bone[2] else '✗'}"
        table.add(name, weights_digest(score.weights), *counts, *colours, bone)
    return table


def _ratio_table(scores: Mapping[str, CandidateScores], variant: str, pair_type: str) -> Table:
    targets = CDDFUSE_RATIO_TARGETS[pair_type]
    table = Table(["candidate", *targets, "met"])
    table.add("target (CDDFuse ÷ max)", *(f"{t:.2f}" for t in targets.values()), "")
    for name, score in scores.items():
        if pair_type not in score.targets[variant]:
            continue
        met, ratios = score.targets[variant][pair_type]
        cells = [f"**{ratios[m]:.3f}**" if ratios[m] >= t else f"{ratios[m]:.3f}" for m, t in targets.items()]
        table.add(name, *cells, met)
    return table


def _peer_table(
    scores: Mapping[str, CandidateScores], peers: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]
) -> Table:
    """Per candidate and released peer: on how many of the 8 target metrics the candidate's mean is at least the
    peer's, per pair type, on each variant."""
    pair_types = list(CDDFUSE_RATIO_TARGETS)
    titles = list(next(iter(peers[VARIANTS[0]].values())))
    table = Table(["candidate", "released weights", *(f"≥ on, {variant} (CT / PET / SPECT)" for variant in VARIANTS)])
    for name, score in scores.items():
        for title in titles:
            cells = []
            for variant in VARIANTS:
                counts = [
                    sum(score.means[variant][t][m] >= peers[variant][t][title][m] for m in CDDFUSE_RATIO_TARGETS[t])
                    for t in pair_types
                    if t in peers[variant]
                ]
                cells.append(" / ".join(map(str, counts)) + " of 8")
            table.add(name, title, *cells)
    return table


def run_candidate_comparison(settings: CandidateSettings) -> str:
    """Score every candidate (:func:`score_candidate`), write ``settings.doc`` and return it."""
    by_type = validation_pairs(settings.dataset_dir, settings.validation_cases, settings.limit)
    scores = {}
    for name, weights in settings.candidates.items():
        print(f"candidate {name}: {weights}", flush=True)
        scores[name] = score_candidate(weights, by_type, settings.out_dir, settings.device)
    counts = ", ".join(f"{t} {len(p)}" for t, p in by_type.items())
    lines = [
        *generated_preamble(
            "Candidate weights against the quality targets",
            settings.command_line(),
            f"Validation split: atlas cases {', '.join(map(str, settings.validation_cases))} of the AANLIB copy"
            f" ({counts} pairs); shifted variant: the same pairs with each anatomical image darkened by the gamma"
            " that halves its mean grey (mmif_monai.studies.validation).",
        ),
        "Targets met: MMIF-Net's mean ÷ pixel-max's under the published protocol against CDDFuse's published ratio,"
        " 8 per pair type (goal: 6 for every pair type on both variants; docs/validation_published.md). Colour:"
        f" CIEDE2000 over the uptake pixels and the share moved to another colour-scale step (bound: every step's"
        f" mean ≤ {COLOUR_BOUND.step_mean:g}, ≤ {100 * COLOUR_BOUND.moved:g} % moved); CT bone greyed: the"
        f" share of the CT's bone pixels shown below the bone level (bound ≤ {100 * BONE_BOUND.greyed:g} %)"
        " (docs/colour.md).",
        "",
        _summary_table(scores).markdown(),
        "",
    ]
    if settings.released:
        peers = released_means(settings.released, by_type, settings.out_dir, settings.device)
        lines += [
            "## Against the authors' released weights",
            "",
            "Of the 8 target metrics, those on which the candidate's mean is at least the released network's (published"
            " protocol; the peers' weights are not in this repository: docs/comparison.md).",
            "",
            _peer_table(scores, peers).markdown(),
            "",
        ]
    for variant in VARIANTS:
        for pair_type in CDDFUSE_RATIO_TARGETS:
            if pair_type in by_type:
                lines += [
                    f"## {pair_type}, {variant}: MMIF-Net ÷ pixel-max (bold: target met)",
                    "",
                    _ratio_table(scores, variant, pair_type).markdown(),
                    "",
                ]
    doc = write_document(settings.doc, lines)
    print(doc)
    return doc
