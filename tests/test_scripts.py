"""Smoke runs of the scripts at tiny sizes: they must keep working, their numbers are not checked here."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_validation_comparison_writes_a_table_per_pair_type(tmp_path):
    doc = tmp_path / "validation.md"
    result = _script(
        "scripts/evaluate_validation.py", "--limit", "1", "--methods", "average", "mmif-net",
        "--out", str(tmp_path / "out"), "--doc", str(doc),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    for pair_type in ("mri_ct", "mri_pet", "mri_spect"):
        assert f"## {pair_type} (1 pairs)" in text
    assert text.count("| mmif-net |") == 3
