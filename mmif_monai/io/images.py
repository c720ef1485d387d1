"""Reading 2D slice images for fusion and writing results atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmif_monai.transforms import LoadModality

__all__ = ["read_slice", "atomic_output", "write_image_atomic", "check_output_path"]


@lru_cache(maxsize=1)
def _slice_loader() -> LoadModality:
    # one loader per process: building MONAI's LoadImage sets up every reader (and their warnings) each time
    return LoadModality()


def read_slice(path: str | Path) -> torch.Tensor:
    """A 2D slice as a float (C, H, W) tensor in [0, 1]: C = 1 for grey, 3 for colour.

    Raises:
        FileNotFoundError / ValueError naming the file: missing, unreadable, not 2D, or not finite.
    """
    img = torch.as_tensor(_slice_loader()(str(path))).float()
    if img.dim() != 3 or img.shape[0] not in (1, 3, 4):
        raise ValueError(f"{path}: expected a 2D grey or RGB image, got shape {tuple(img.shape)}")
    img = img[:3]  # drop an alpha channel
    if img.shape[0] == 3 and bool((img[0] == img[1]).all() and (img[1] == img[2]).all()):
        img = img[:1]  # a grey image stored as RGB
    scale = 255.0 if img.max() <= 255 else float(np.iinfo(np.uint16).max)
    return (img / scale).clamp(0.0, 1.0)


def check_output_path(path: str | Path, overwrite: bool) -> Path:
    """Refuse to replace an existing output unless ``overwrite``; the parent folder must exist or be creatable."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: output exists; pass --overwrite to replace it")
    return path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    A reader never sees a half-written file, and a failure leaves any earlier file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image_atomic(image: torch.Tensor, path: str | Path) -> None:
    """Write a (C, H, W) image in [0, 1] as an 8-bit PNG, atomically."""
    array = (image.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    pil = Image.fromarray(array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1))
    with atomic_output(path) as tmp:
        pil.save(tmp, format="PNG")
