"""Scoring folders of fused images and writing the results: CSV, Markdown table, plot.

``evaluate_folders`` follows the literature's protocol (see ``docs/metrics.md``): every image is read as 8-bit
grey (colour through BT.601 luma); the fused image, and only the fused image, is then min-max stretched to
0..255 and rounded. Results are ``{method: {metric: [value per image]}}`` with images in the order of
:func:`image_names`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.utils import look_up_option
from PIL import Image
from tqdm import tqdm

from mmif_monai.devices import resolve_device
from mmif_monai.io.markdown import markdown_rows
from mmif_monai.io.outputs import check_output_path, check_outputs_spare_inputs
from mmif_monai.io.paths import IMAGE_SUFFIXES
from mmif_monai.io.preflight import (
    check_reference,
    check_same_names,
    evaluation_output_paths,
    image_files,
    image_names,
    source_files,
)
from mmif_monai.metrics.batched import METRIC_NAMES, batched_metrics, check_protocols
from mmif_monai.metrics.protocol import stretch_to_uint8_range, to_uint8_grey
from mmif_monai.metrics.statistics import paired_comparison, paired_comparison_table

__all__ = [
    "IMAGE_SUFFIXES",
    "PROTOCOL_CAPTIONS",
    "SSIM_PROTOCOL_CAPTIONS",
    "image_files",
    "image_names",
    "load_grey",
    "evaluate_folders",
    "summarise",
    "write_csv",
    "markdown_table",
    "check_reference",
    "write_evaluation",
    "plot_results",
]

Results = Mapping[str, Mapping[str, Sequence[float]]]


#: How each SSIM protocol is described in table captions.
PROTOCOL_CAPTIONS = {
    "project": "8-bit grey, fused image min-max stretched",
    "published": "published protocol: CDDFuse's evaluator, 8-bit grey as written, MI in nats",
}
SSIM_PROTOCOL_CAPTIONS = {
    "literature": "literature (scikit-image structural_similarity, data_range = 2 on 0-255 data)",
    "correct": "correct (scikit-image structural_similarity, data_range = 255)",
}

# PIL modes read through a conversion; anything else that is not 8-bit "L" or "RGB" is refused.
_CONVERTED_MODES = {"1": "L", "LA": "L", "P": "RGB", "PA": "RGB", "RGBA": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}


def load_grey(path: str | Path) -> np.ndarray:
    """An image file as (H, W) uint8 grey values; colour images give their BT.601 luma.

    Raises:
        ValueError: for images that are not 8 bits per channel (e.g. 16-bit or float TIFF).
    """
    with Image.open(path) as img:
        img = img.convert(_CONVERTED_MODES[img.mode]) if img.mode in _CONVERTED_MODES else img
        if img.mode not in ("L", "RGB"):
            raise ValueError(f"{path}: mode {img.mode!r} is not an 8-bit grey or colour image")
        return to_uint8_grey(np.array(img))


def _stack(images: list[np.ndarray], indices: list[int], device: torch.device) -> torch.Tensor:
    batch = np.stack([images[i] for i in indices])[:, None]
    return torch.from_numpy(batch).to(device=device, dtype=torch.float64)


def _score_batch(
    fused: list[np.ndarray],
    a: list[np.ndarray],
    b: list[np.ndarray],
    ssim_protocol: str,
    device: torch.device,
    protocol: str = "project",
) -> dict[str, list[float]]:
    """Metrics of a list of triplets, batching images of equal size together."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(fused):
        groups.setdefault(img.shape, []).append(i)
    scores = {name: [math.nan] * len(fused) for name in METRIC_NAMES}
    for idx in groups.values():
        values = batched_metrics(
            _stack(fused, idx, device),
            _stack(a, idx, device),
            _stack(b, idx, device),
            ssim_protocol=ssim_protocol,
            protocol=protocol,
        )
        for name, column in values.items():
            for i, value in zip(idx, column.tolist()):
                scores[name][i] = value
    return scores


def evaluate_folders(
    fused_dirs: Mapping[str, str | Path],
    a_dir: str | Path,
    b_dir: str | Path,
    ssim_protocol: str = "literature",
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = True,
    protocol: str = "project",
) -> dict[str, dict[str, list[float]]]:
    """Every metric of every fused image in ``fused_dirs``, matched to the sources by file name.

    Args:
        fused_dirs: method name -> folder of its fused images.
        a_dir: folder of the first (anatomical) source images.
        b_dir: folder of the second (functional) source images; colour images are scored on their luma.
        ssim_protocol: ``"literature"`` or ``"correct"``, see ``docs/metrics.md``.
        batch_size: images scored together.
        device: torch device for the metrics; ``None`` picks CUDA when available.
        progress: show a tqdm progress bar (on a terminal only).
        protocol: ``"project"`` (fused images min-max stretched, docs/metrics.md's definitions) or ``"published"``
            (CDDFuse's evaluator: images as written, no stretch; :data:`~mmif_monai.metrics.batched.SCORING_PROTOCOLS`).

    Returns:
        ``{method: {metric: [value per image]}}``, images in the order of :func:`image_names`.

    Raises:
        FileNotFoundError: for a missing folder or one without images.
        ValueError: for folders whose file names do not match the sources, or images of different sizes.
    """
    check_protocols(protocol, ssim_protocol)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    names, a_files, b_files = source_files(a_dir, b_dir)
    fused_files = {method: image_files(Path(folder)) for method, folder in fused_dirs.items()}
    for method, files in fused_files.items():
        check_same_names(fused_dirs[method], set(files), a_dir, set(names))
    device = resolve_device(device)

    results: dict[str, dict[str, list[float]]] = {m: {n: [] for n in METRIC_NAMES} for m in fused_dirs}
    total = len(names) * len(fused_dirs)
    # disable=None: a bar on a terminal, none in logs and pipes
    with tqdm(total=total, desc="fusion metrics", unit="image", disable=None if progress else True) as bar:
        for start in range(0, len(names), batch_size):
            batch = names[start : start + batch_size]
            a = [load_grey(a_files[n]) for n in batch]
            b = [load_grey(b_files[n]) for n in batch]
            for n, img_a, img_b in zip(batch, a, b):
                if img_a.shape != img_b.shape:
                    raise ValueError(f"{a_files[n]} is {img_a.shape}, {b_files[n]} is {img_b.shape}")
            for method, files in fused_files.items():
                fused = [load_grey(files[n]) for n in batch]
                if protocol == "project":
                    fused = [stretch_to_uint8_range(image) for image in fused]
                for n, img_f, img_a in zip(batch, fused, a):
                    if img_f.shape != img_a.shape:
                        raise ValueError(f"{files[n]} is {img_f.shape}, its sources are {img_a.shape}")
                for metric, values in _score_batch(fused, a, b, ssim_protocol, device, protocol).items():
                    results[method][metric].extend(values)
                bar.update(len(batch))
    return results


def summarise(results: Results) -> dict[str, dict[str, tuple[float, float]]]:
    """``{method: {metric: (mean, std)}}`` over images; std is the population std (numpy's default).

    Images where a metric is undefined (NaN, e.g. CC of a constant image) are left out of that metric. An infinite
    value (PSNR of an exact copy) makes the mean infinite and the std undefined: NaN, not numpy's inf - inf.
    """
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for method, metrics in results.items():
        summary[method] = {}
        for metric, values in metrics.items():
            arr = np.asarray(values, dtype=np.float64)
            arr = arr[~np.isnan(arr)]
            if not arr.size:
                summary[method][metric] = (math.nan, math.nan)
            elif not np.isfinite(arr).all():
                summary[method][metric] = (float(arr.mean()), math.nan)
            else:
                summary[method][metric] = (float(arr.mean()), float(arr.std()))
    return summary


def _metric_columns(results: Results) -> list[str]:
    """Metric names present in any method, in the order of :data:`METRIC_NAMES` then first appearance."""
    seen = dict.fromkeys(m for metrics in results.values() for m in metrics)
    return [m for m in METRIC_NAMES if m in seen] + [m for m in seen if m not in METRIC_NAMES]


def write_csv(results: Results, path: str | Path, names: Sequence[str] | None = None) -> None:
    """One row per method and image: ``method, image, <metric>...``.

    ``names`` labels the images (e.g. :func:`image_names`); without it, images are numbered from 0.
    """
    columns = _metric_columns(results)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "image", *columns])
        for method, metrics in results.items():
            count = max(len(v) for v in metrics.values())
            if names is not None and len(names) != count:
                raise ValueError(f"{len(names)} image names for {count} results of {method!r}")
            for i in range(count):
                label = names[i] if names is not None else i
                writer.writerow([method, label, *(metrics[c][i] if c in metrics else "" for c in columns)])


def markdown_table(results: Results, ssim_protocol: str, protocol: str = "project") -> str:
    """Mean ± std per method (rows) and metric (columns); with several methods the best mean per column is bold.

    Every metric here is higher-is-better. The caption names the protocols the results were computed with.
    """
    summary = summarise(results)
    columns = _metric_columns(results)
    best = {
        c: max((s[c][0] for s in summary.values() if c in s and not math.isnan(s[c][0])), default=math.nan)
        for c in columns
    }
    counts = sorted({max(len(v) for v in metrics.values()) for metrics in results.values()})
    caption = (
        f"Fusion metrics, mean ± std over {' / '.join(map(str, counts))} images per method "
        f"({look_up_option(protocol, PROTOCOL_CAPTIONS)}). "
        f"SSIM protocol: {look_up_option(ssim_protocol, SSIM_PROTOCOL_CAPTIONS)}."
    )
    if len(summary) > 1:
        caption += " Best mean per column in bold (higher is better for every metric)."
    rows = []
    for method, stats in summary.items():
        cells = [method]
        for c in columns:
            if c not in stats:
                cells.append("")
                continue
            mean, std = stats[c]
            cell = f"{mean:.4f} ± {std:.4f}"
            cells.append(f"**{cell}**" if len(summary) > 1 and mean == best[c] else cell)
        rows.append(cells)
    return "\n".join([f"**Table:** {caption}", "", *markdown_rows(["method", *columns], rows)]) + "\n"


def plot_results(results: Results, path: str | Path) -> None:
    """PNG bar plot of mean ± std, one panel per metric and one bar per method."""
    # Imported here so that importing the metrics (e.g. in a training process) does not load matplotlib; the
    # Agg canvas renders without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = summarise(results)
    columns = _metric_columns(results)
    methods = list(summary)
    n_cols = min(4, len(columns))
    n_rows = math.ceil(len(columns) / n_cols)
    fig = Figure(figsize=(3.2 * n_cols, 2.8 * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    for k, metric in enumerate(columns):
        ax = fig.add_subplot(n_rows, n_cols, k + 1)
        stats = [summary[m].get(metric, (math.nan, math.nan)) for m in methods]
        # an infinite mean (PSNR of an exact copy) has no bar to draw: it is marked instead
        heights = [mean if math.isfinite(mean) else math.nan for mean, _ in stats]
        ax.bar(range(len(methods)), heights, yerr=[s[1] for s in stats], capsize=3, color="C0")
        for x, (mean, _) in enumerate(stats):
            if math.isinf(mean):
                ax.annotate("∞", (x, 0), ha="center", va="bottom")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric)
    fig.savefig(path, format="png", dpi=120)


def write_evaluation(
    results: Results,
    output_dir: str | Path,
    a_dir: str | Path,
    b_dir: str | Path,
    ssim_protocol: str = "literature",
    overwrite: bool = False,
    reference: str | None = None,
    protocol: str = "project",
) -> tuple[str, list[Path]]:
    """Write ``metrics.csv`` (per image, labelled by :func:`image_names`), ``metrics.md`` and ``metrics.png``.

    With a ``reference`` method, also ``paired.md``: every other method's paired differences from it
    (:mod:`mmif_monai.metrics.statistics`).

    Returns:
        the Markdown tables and the paths written.

    Raises:
        FileExistsError: if one of the files exists and ``overwrite`` is False (nothing is written then).
        ValueError: for a ``reference`` that is not one of two or more methods, or an output in a source folder
        (even with ``overwrite``).
    """
    check_reference(reference, list(results))
    folder = Path(output_dir)
    paths = evaluation_output_paths(folder, reference)
    check_outputs_spare_inputs(paths, [a_dir, b_dir])
    for path in paths:
        check_output_path(path, overwrite)
    table = markdown_table(results, ssim_protocol, protocol)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = paths[:3]
    write_csv(results, csv_path, names=image_names(a_dir, b_dir))
    md_path.write_text(table)
    plot_results(results, png_path)
    if reference is not None:
        comparison = paired_comparison(results, [(m, reference) for m in results if m != reference])
        paired = paired_comparison_table(comparison)
        paths[3].write_text(paired)
        table += "\n" + paired
    return table, paths
