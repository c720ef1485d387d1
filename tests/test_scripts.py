"""Smoke runs of the scripts at tiny sizes: they must keep working, their numbers are not checked here."""

import subprocess
import sys
from pathlib import Path

from PIL import Image

from mmif_monai.io.paths import SAMPLES_DIR

ROOT = Path(__file__).resolve().parents[1]


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_validation_comparison_writes_a_table_per_pair_type_and_a_figure(tmp_path):
    doc, figure = tmp_path / "validation.md", tmp_path / "grid.png"
    result = _script(
        "scripts/evaluate_validation.py", "--limit", "1", "--methods", "average", "mmif-net",
        "--out", str(tmp_path / "out"), "--doc", str(doc), "--figure", str(figure), "--figure-methods", "mmif-net", "average",
        # the shipped samples hold validation pairs of each type, so the test does not depend on the full data set
        "--dataset-dir", str(SAMPLES_DIR),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    for pair_type in ("mri_ct", "mri_pet", "mri_spect"):
        assert f"## {pair_type} (1 pairs)" in text
    assert text.count("| mmif-net |") == 3
    # one row per pair type (one pair each); columns: the two sources and the two methods asked for
    with Image.open(figure) as image:
        width, height = image.size
    assert abs(width / height - 4 / 3) < 0.05, (width, height)
