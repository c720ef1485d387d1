"""Determinism on CPU: the same inputs and weights give bit-identical fused files, run after run, and whether a
pair is fused alone or batched with others (``--pairs``). Every method, on 64x64 crops of the sample pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_runs import fuse_pair
from mmif_monai.cli.main import main
from mmif_monai.fusion.methods import available_methods
from mmif_monai.io.paths import SAMPLES_DIR

PAIRS = SAMPLES_DIR / "mri_pet"
NAMES = ("30061.png", "30075.png")


def _crop_pairs(root: Path) -> tuple[Path, Path]:
    """Folders A (MRI) and B (colour PET) holding a 64x64 crop of each sample pair: the colour path, and fast."""
    for modality, folder in (("MRI", root / "A"), ("PET", root / "B")):
        folder.mkdir(parents=True)
        for name in NAMES:
            image = Image.open(PAIRS / modality / name)
            image.crop((96, 96, 160, 160)).save(folder / name)
    return root / "A", root / "B"


@pytest.mark.parametrize("method", available_methods())
def test_same_input_and_weights_give_bit_identical_files(tmp_path, method):
    a, b = _crop_pairs(tmp_path)
    single = [tmp_path / f"run{i}.png" for i in range(2)]
    for out in single:  # each run loads the method (and MMIF-Net's weights) afresh
        assert fuse_pair(str(a / NAMES[0]), str(b / NAMES[0]), str(out), "--method", method) == 0
    assert single[0].read_bytes() == single[1].read_bytes()
    # batched with the other pair of the same size: the same bytes again
    assert main(["fuse", "--method", method, "--pairs", str(a), str(b), "-o", str(tmp_path / "pairs")]) == 0
    assert (tmp_path / "pairs" / NAMES[0]).read_bytes() == single[0].read_bytes()
    # not trivially equal: a colour image with content
    fused = np.asarray(Image.open(single[0]))
    assert fused.shape == (64, 64, 3) and fused.std() > 0
