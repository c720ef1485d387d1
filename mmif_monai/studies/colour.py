"""The colour-fidelity study (``scripts/colour_fidelity.py`` writes ``docs/colour.md``): every method fuses the
validation split's MRI–PET and MRI–SPECT pairs without and with each luminance limit
(:mod:`mmif_monai.fusion.colour`), and every fused image is scored on colour (:mod:`mmif_monai.metrics.colour`) and
on anatomy (Qabf, SSIM) side by side; the MRI–CT pairs are scored on how the CT's bone reads
(:mod:`mmif_monai.metrics.bone`) next to the same anatomy scores."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmif_monai.fusion.classical import CLASSICAL_METHODS
from mmif_monai.fusion.colour import COLOUR_FIDELITY, LuminanceLimit
from mmif_monai.fusion.methods import NETWORK_METHOD
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, FusionPair
from mmif_monai.io.images import read_slice
from mmif_monai.io.paths import DEFAULT_DATASET_DIR
from mmif_monai.metrics.batched import batched_metrics
from mmif_monai.metrics.bone import BONE_BOUND, BONE_MIN_LEVEL, BoneFidelity, BonePixels, bone_pixels
from mmif_monai.metrics.colour import (
    AANLIB_COLOUR_SCALES,
    COLOUR_BOUND,
    UPTAKE_MIN_CHROMA,
    ColourFidelity,
    ColourScale,
    ColourShifts,
    colour_shifts,
    to_lab,
    uptake_mask,
)
from mmif_monai.metrics.protocol import stretch_to_uint8_range
from mmif_monai.metrics.report import load_grey
from mmif_monai.studies.comparison import validation_pairs
from mmif_monai.studies.documents import generated_preamble, machine_description, report_finished, write_document
from mmif_monai.studies.fusions import figure_slices, fuse_with_methods, save_fusion_grid
from mmif_monai.studies.methods import method_title
from mmif_monai.studies.tables import Table

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_LIMITS",
    "ANATOMY_METRICS",
    "ColourSettings",
    "FolderScores",
    "BoneScores",
    "anatomy_scores",
    "score_folder",
    "score_bone_folder",
    "scale_fit",
    "run_colour_study",
]

#: MMIF-Net and the classical rules
DEFAULT_METHODS = (NETWORK_METHOD, *CLASSICAL_METHODS)
#: the limits measured besides none: a stricter one, the default of ``--colour-fidelity``, a looser one
DEFAULT_LIMITS = (LuminanceLimit(level=0.01, detail=0.06), COLOUR_FIDELITY, LuminanceLimit(level=0.03, detail=0.2))
#: anatomy scores of a fused image: ``mmif evaluate``'s Qabf and SSIM (both sources), and both against the MRI alone
ANATOMY_METRICS = ("Qabf", "SSIM", "Q MRI/F", "SSIM F,MRI")


@dataclass
class ColourSettings:
    """What one colour-fidelity study does; see ``python scripts/colour_fidelity.py --help``."""

    out_dir: Path
    doc: Path
    figure: Path
    dataset_dir: Path = DEFAULT_DATASET_DIR
    methods: Sequence[str] = DEFAULT_METHODS
    limits: Sequence[LuminanceLimit] = DEFAULT_LIMITS
    #: score only the first N validation pairs of each type
    limit: int | None = None
    device: str = "cpu"

    def command_line(self) -> str:
        """The command that regenerates the document (options that shape its content only)."""
        parts = ["python scripts/colour_fidelity.py"]
        if list(self.methods) != list(DEFAULT_METHODS):
            parts.append("--methods " + " ".join(self.methods))
        if list(self.limits) != list(DEFAULT_LIMITS):
            parts.append("--limits " + " ".join(f"{x.level:g}:{x.detail:g}" for x in self.limits))
        if self.limit is not None:
            parts.append(f"--limit {self.limit}")
        return " ".join(parts)


@dataclass(frozen=True)
class FolderScores:
    """One method's fused images of one pair type: colour fidelity over their uptake pixels, anatomy means."""

    colour: ColourFidelity
    anatomy: dict[str, float]


@dataclass(frozen=True)
class BoneScores:
    """One method's fused MRI–CT images: bone fidelity over their bone pixels, anatomy means."""

    bone: BoneFidelity
    anatomy: dict[str, float]


def _batch(grey: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(grey, dtype=np.float64))[None, None]


def anatomy_scores(fused: Path, anatomical: Path, functional: Path) -> dict[str, float]:
    """:data:`ANATOMY_METRICS` of one fused image, read as ``mmif evaluate`` reads it (8-bit luma, fused image
    min-max stretched)."""
    f = _batch(stretch_to_uint8_range(load_grey(fused)))
    a, b = _batch(load_grey(anatomical)), _batch(load_grey(functional))
    both = batched_metrics(f, a, b, names=("Qabf", "SSIM"))
    # the MRI as both sources: Qabf is then Xydeas & Petrovic's Q^{A/F} and SSIM is 2 SSIM(F, A)
    mri = batched_metrics(f, a, a, names=("Qabf", "SSIM"))
    values = (both["Qabf"], both["SSIM"], mri["Qabf"], mri["SSIM"] / 2)
    return {name: float(v[0]) for name, v in zip(ANATOMY_METRICS, values)}


def _mean_anatomy(pairs: Sequence[FusionPair], folder: Path) -> dict[str, float]:
    anatomy = [anatomy_scores(folder / pair.name, pair.anatomical, pair.functional) for pair in pairs]
    return {m: float(np.mean([a[m] for a in anatomy])) for m in ANATOMY_METRICS}


def score_folder(pairs: Sequence[FusionPair], folder: Path, scale: ColourScale) -> FolderScores:
    """Colour fidelity (pooled over the pairs' uptake pixels) and mean anatomy scores of ``folder/<pair name>``."""
    shifts = [colour_shifts(read_slice(folder / p.name), read_slice(p.functional), scale) for p in pairs]
    colour = ColourFidelity.from_shifts(ColourShifts.concatenate(shifts), scale.steps)
    return FolderScores(colour, _mean_anatomy(pairs, folder))


def score_bone_folder(pairs: Sequence[FusionPair], folder: Path) -> BoneScores:
    """Bone fidelity (pooled over the CT's bone pixels, fused images as written) and mean anatomy scores of
    ``folder/<pair name>`` for MRI–CT pairs (the CT is the functional source)."""
    pixels = [bone_pixels(load_grey(folder / p.name), load_grey(p.functional)) for p in pairs]
    return BoneScores(BoneFidelity.of(BonePixels.concatenate(pixels)), _mean_anatomy(pairs, folder))


def scale_fit(pairs: Sequence[FusionPair], scale: ColourScale) -> float:
    """The largest ΔE00 between an uptake colour of the pairs' functional images and the scale: how well the
    scale's knots describe their colour map."""
    worst = 0.0
    for pair in pairs:
        lab = to_lab(read_slice(pair.functional))
        _, distance = scale.project(lab[uptake_mask(lab)])
        worst = max(worst, float(distance.max(initial=0.0)))
    return worst


def _fused_dir(settings: ColourSettings, pair_type: str, limit: LuminanceLimit | None) -> Path:
    """Where one pair type's fusions under one limit (``None``: no limit) are kept."""
    return settings.out_dir / pair_type / ("none" if limit is None else limit.label)


def _setting(limit: LuminanceLimit | None) -> str:
    if limit is None:
        return "none"
    name = f"level {limit.level:g}, detail {limit.detail:g}"
    return f"{name} (`--colour-fidelity`)" if limit == COLOUR_FIDELITY else name


def _summary_table(scores: dict[tuple[str, str], FolderScores]) -> Table:
    table = Table(
        ["method", "luminance limit", "ΔE00 mean", "ΔE00 p95", "moved", "worst step mean", "bound", *ANATOMY_METRICS]
    )
    for (label, method), score in scores.items():
        colour = score.colour
        table.add(
            method_title(method),
            label,
            f"{colour.overall.mean:.2f}",
            f"{colour.overall.p95:.2f}",
            f"{100 * colour.overall.moved:.1f} %",
            f"{colour.worst_step_mean:.2f}",
            "✓" if COLOUR_BOUND.met(colour) else "✗",
            *(f"{score.anatomy[m]:.3f}" for m in ANATOMY_METRICS),
        )
    return table


def _bone_table(scores: dict[str, BoneScores]) -> Table:
    table = Table(["method", "bone pixels", "brightness kept", "greyed", "bound", *ANATOMY_METRICS])
    for method, score in scores.items():
        bone = score.bone
        table.add(
            method_title(method),
            bone.pixels,
            f"{bone.brightness:.3f}",
            f"{100 * bone.greyed:.1f} %",
            "✓" if BONE_BOUND.met(bone) else "✗",
            *(f"{score.anatomy[m]:.3f}" for m in ANATOMY_METRICS),
        )
    return table


def _bone_section(pairs: Sequence[FusionPair], scores: dict[str, BoneScores]) -> list[str]:
    return [
        f"## mri_ct ({len(pairs)} pairs): bone",
        "",
        "CT paints cortical bone white, MRI paints it dark. A fusion that draws the skull in the MRI's edges shows it"
        " grey with the MRI's dark band inside, a double contour where the CT has one solid structure.",
        "",
        f"- **Bone region**: CT pixels at 8-bit level {BONE_MIN_LEVEL} or above (the AANLIB CT slices paint most of"
        " the skull at 255 and the brain below 180).",
        "- **Brightness kept**: the fused mean over the bone region ÷ the CT's mean there; **greyed**: the share of"
        f" bone pixels the fused image (as written) shows below {BONE_MIN_LEVEL}.",
        f"- **Bound**: at most **{100 * BONE_BOUND.greyed:g} %** greyed, the same 1 pixel in 20 the colour bound"
        " lets move to another step (a project choice).",
        "",
        _bone_table(scores).markdown(),
    ]


def _step_table(scores: dict[tuple[str, str], FolderScores], label: str, scale: ColourScale) -> Table:
    methods = [m for (setting, m) in scores if setting == label]
    columns = ["step", "colour (RGB)", "uptake pixels", *(method_title(m) for m in methods)]
    table = Table(columns, title=f"Per step, luminance limit: {label}")
    first = scores[label, methods[0]].colour
    for k, rgb in enumerate(scale.step_colours()):
        share = first.steps[k].pixels / first.overall.pixels
        cells = []
        for method in methods:
            step = scores[label, method].colour.steps[k]
            cells.append(f"{step.mean:.1f} / {step.p95:.1f} / {100 * step.moved:.1f} %" if step.pixels else "–")
        table.add(k + 1, "({}, {}, {})".format(*rgb.tolist()), f"{100 * share:.1f} %", *cells)
    return table


def _definitions(scales: Sequence[ColourScale]) -> list[str]:
    widths = ", ".join(
        f"{s.name.split(':')[0]} {s.length:.0f} ΔE00 in {s.steps} steps of {s.step_width:.1f}" for s in scales
    )
    return [
        "## What is measured",
        "",
        "- **Colour difference**: CIEDE2000 (`skimage.color.deltaE_ciede2000` of `skimage.color.rgb2lab`) between"
        " each fused pixel and the same functional pixel.",
        f"- **Uptake region**: functional pixels with CIELAB chroma C\\*ab ≥ {UPTAKE_MIN_CHROMA:g}, those the colour"
        " map paints in a colour rather than black or grey; the anatomy shows as it is everywhere else.",
        "- **Steps**: each colour map is a polyline through its knots (`AANLIB_COLOUR_SCALES`), cut into stretches"
        f" of equal ΔE00 length ({widths}); a pixel belongs to the step of its functional colour. Eight steps"
        " (a project choice) make neighbouring steps differ by more than 20 ΔE00, colours a reader tells apart"
        " at a glance, as a colour bar's labelled bands do.",
        "- **Moved**: the fused colour projects onto the scale more than half a step from the functional colour, so"
        " it is closer to the colour one step up or down the scale than to its own (the issue's criterion, with the"
        " step centred on each pixel's own colour so that no invisible shift across a fixed step border counts)."
        " Where a scale bends back close to itself (SPECT's dark teal turning to violet) a small shift can still"
        " land a step away.",
        "- **Anatomy**: `mmif evaluate`'s Qabf and SSIM against both sources (literature protocol, higher is better),"
        " and the same two against the MRI alone (Q MRI/F is Xydeas & Petrovic's Q^A/F; SSIM F,MRI is SSIM(F, MRI)).",
        "- **Luminance limit** (`mmif_monai.fusion.colour.LuminanceLimit`): the largest move of the fused"
        f" luminance Y (0..1) from the functional Y, for the level (Gaussian σ = {COLOUR_FIDELITY.sigma:g} px) and"
        f" for the detail, in full where the functional chroma |(I, Q)| ≥ {COLOUR_FIDELITY.full_chroma:g}; none:"
        " the fusion as it was.",
        "",
        "## The bound",
        "",
        f"On every step, the mean ΔE00 is at most **{COLOUR_BOUND.step_mean:g}**, and at most"
        f" **{100 * COLOUR_BOUND.moved:g} %** of the uptake pixels move to another step.",
        "",
        "- ΔE00 = 1 is about a just-noticeable difference, by the design of the CIE formulas; ASTM D2244"
        " recommends ΔE00 for differences up to about 5 ΔE\\*ab, and ISO 12647-2:2013 accepts a printed solid"
        " as its colour within 3.5 ΔE00 (cyan, magenta, yellow) or 5 ΔE00 (black) (R. Chung, TAGA 2015,"
        " scholarworks.rit.edu/other/854). A step's mean within 5 ΔE00 keeps each step's colour as close to the"
        " functional image as print keeps a solid ink.",
        "- The mean is bounded, not every pixel: the anatomy is drawn as lighter and darker edges inside the coloured"
        " regions, so single pixels on an edge differ more (the p95 column); what the bound keeps from them is a"
        " move to another step, and that only 1 pixel in 20 (a project choice, the same tail the p95 leaves out).",
        "",
    ]


def run_colour_study(settings: ColourSettings) -> str:
    """Fuse and score the validation split's colour pairs (colour) and MRI–CT pairs (bone), write ``settings.doc``
    and ``settings.figure``; returns the document."""
    start = time.perf_counter()
    validation = validation_pairs(settings.dataset_dir, DEFAULT_VALIDATION_CASES, settings.limit)
    limits: list[LuminanceLimit | None] = [None, *settings.limits]
    lines = [
        *generated_preamble(
            "Colour and bone fidelity of the fused images",
            settings.command_line(),
            f"Validation split: atlas cases {', '.join(map(str, DEFAULT_VALIDATION_CASES))} of the AANLIB copy"
            ' (docs/method.md, "Data split"); the fused images are kept under `outputs/colour`.',
        ),
        *_definitions(list(AANLIB_COLOUR_SCALES.values())),
    ]
    figure_folders: dict[str, dict[str, Path]] = {}
    figure_pairs: list[FusionPair] = []
    for pair_type, scale in AANLIB_COLOUR_SCALES.items():
        pairs = validation.get(pair_type, [])
        if not pairs:
            continue
        scores: dict[tuple[str, str], FolderScores] = {}
        for limit in limits:
            out = _fused_dir(settings, pair_type, limit)
            folders = fuse_with_methods(pairs, settings.methods, out, settings.device, luminance_limit=limit)
            scoring = tqdm(
                folders.items(), desc=f"{pair_type}, limit {_setting(limit)}: colour", disable=None, leave=False
            )
            for method, folder in scoring:
                scores[_setting(limit), method] = score_folder(pairs, folder, scale)
                if method == NETWORK_METHOD and limit in (None, COLOUR_FIDELITY):
                    title = "MMIF-Net" if limit is None else "MMIF-Net, --colour-fidelity"
                    figure_folders.setdefault(pair_type, {})[title] = folder
        figure_pairs += figure_slices(pairs)
        summary = _summary_table(scores)
        section = [
            f"## {pair_type} ({len(pairs)} pairs)",
            "",
            f"Colour map: {scale.name}; every uptake colour of these functional slices lies within"
            f" {scale_fit(pairs, scale):.2f} ΔE00 of it.",
            "",
            summary.markdown(),
            "Per step: each step's share of the uptake pixels, and mean ΔE00 / p95 / moved per method.",
            "",
            *(_step_table(scores, _setting(limit), scale).markdown() for limit in limits),
        ]
        print(f"\n{pair_type} ({len(pairs)} pairs)\n{summary.text()}", flush=True)
        lines += section
    ct_pairs = validation.get("mri_ct", [])
    if ct_pairs:
        folders = fuse_with_methods(ct_pairs, settings.methods, _fused_dir(settings, "mri_ct", None), settings.device)
        scoring = tqdm(folders.items(), desc="mri_ct: bone", disable=None, leave=False)
        bone_scores = {method: score_bone_folder(ct_pairs, folder) for method, folder in scoring}
        print(f"\nmri_ct ({len(ct_pairs)} pairs): bone\n{_bone_table(bone_scores).text()}", flush=True)
        lines += _bone_section(ct_pairs, bone_scores)
    if figure_folders:
        save_fusion_grid(figure_pairs, figure_folders, settings.figure)
        lines += [f"Figure: `{settings.figure.name}`, sources and MMIF-Net's fusion without and with the limit.", ""]
    lines.append(f"This run: {(time.perf_counter() - start) / 60:.1f} min on {machine_description(settings.device)}.")
    doc = write_document(settings.doc, lines)
    count = sum(len(validation.get(t, [])) for t in (*AANLIB_COLOUR_SCALES, "mri_ct"))
    report_finished(f"scored {len(settings.methods)} methods", count, start, [settings.doc, settings.figure])
    return doc
