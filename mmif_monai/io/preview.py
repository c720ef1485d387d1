"""Preview figures: sources and fused images side by side, for people who would rather look than read."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mmif_monai.io.images import atomic_output  # noqa: E402

__all__ = ["save_preview_grid"]


def save_preview_grid(
    rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str], column_labels: Sequence[str], path: str | Path
) -> Path:
    """Save a grid of (C, H, W) images in [0, 1] (C = 1 grey or 3 colour), one row per case, as a palette PNG."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.4 * n_rows), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = images[c].detach().cpu().clamp(0, 1)
                if image.shape[0] == 1:
                    ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(image.permute(1, 2, 0).numpy())
            if r == 0 and c < len(column_labels):
                ax.set_title(column_labels[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    # a 256-colour palette (median cut, no dithering) keeps the figures a third of the size, for the repository
    # and for pages, with no visible change at figure scale
    with Image.open(buffer) as rendered:
        palette = rendered.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_output(path) as tmp:
        palette.save(tmp, format="PNG", optimize=True)
    return Path(path)
