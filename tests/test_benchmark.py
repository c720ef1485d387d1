"""Smoke run of scripts/benchmark.py at tiny sizes: every section prints the rows it should (no timings checked)."""

import subprocess
import sys
from pathlib import Path

import pytest

from mmif_monai.fusion.engines import CPU_ENGINE, RUNTIME_ENGINES
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.io.preflight import SLICE_BATCH
from mmif_monai.metrics import METRIC_NAMES

# runs the benchmark script: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# on the shipped samples, so that the smoke run does not depend on where the full data set lives
SMOKE_ARGS = [
    "--size", "64", "--batch-sizes", "1", "2", "--repeats", "1", "--warmup", "0", "--threads", "1",
    "--matmul-size", "128", "--metrics-n", "1", "--train-batch", "2", "--train-crop", "64",
    "--volume-shape", "64", "64", "4", "--dataset-dir", str(SAMPLES_DIR), "--engine-threads", "1",
]  # fmt: skip


def _rows(text: str, title: str) -> list[list[str]]:
    """The rows of the printed table whose title line starts with ``== title``, split into cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("== " + title))
    rows = []
    for line in lines[start + 3 :]:  # title, column header, rule
        if not line.strip() or line.startswith(("==", "   ")):
            break
        rows.append(line.split())
    return rows


def test_benchmark_prints_every_section_with_its_rows(tmp_path):
    markdown = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", *SMOKE_ARGS, "--markdown", str(markdown)],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "1 torch threads" in out and "load average" in out

    assert len(_rows(out, "matmul rate")) == 1

    inference = [row for batch in (1, 2) for row in _rows(out, f"inference, 64x64 pairs on cpu, batch {batch}")]
    keys = {(" ".join(r[:-10]), r[-10], r[-9]) for r in inference}  # (model, variant, batch)
    for batch in ("1", "2"):
        for model in ("DenseFuse", "MMIF-Net fast (default)", "MMIF-Net paper"):
            for variant in ("eager", "optimised"):
                assert (model, variant, batch) in keys
    # DenseFuse is the reference of its own group, so its ratio column reads exactly 1
    assert all(r[-6] == "1.00" for r in inference if r[0] == "DenseFuse")

    # every model on every engine, DenseFuse in torch the reference (its ratio exactly 1)
    engines = {(" ".join(r[:-5]), r[-5]): r for r in _rows(out, "engines: one 64x64 pair")}
    expected = {("DenseFuse", "torch")} | {
        (model, engine)
        for model in ("MMIF-Net fast (default)", "MMIF-Net paper")
        for engine in ("torch", *RUNTIME_ENGINES)
    }
    assert set(engines) == expected and engines[("DenseFuse", "torch")][-2] == "1.00"
    assert "the faster CPU runtime is" in out

    startup = _rows(out, "start-up")
    assert [" ".join(r[:-2]) for r in startup] == [
        "python -c 'import torch'", "mmif fuse (one 2D pair)", "mmif fuse, first run (ONNX export)"
    ]  # fmt: skip
    assert startup[0][-1] == "1.00"  # the reference of its own table
    assert [" ".join(r[:-3]) for r in _rows(out, "LatLRR")] == [
        "FFT (used)", "direct 31x31 convolution", "explicit unfold/project/fold"
    ]  # fmt: skip
    # (method, engine, slices per network call): the default batch unless --volume-batch-sizes says otherwise
    batch = str(SLICE_BATCH)
    assert [r[:3] for r in _rows(out, "3D job")] == [["mmif-net", CPU_ENGINE, batch], ["average", "-", batch]]
    targets = _rows(out, "targets")
    assert [" ".join(r[:-3]) for r in targets] == [
        "default engine per pair / DenseFuse in torch", "3D job / the same job with average",
        "mmif fuse of one 2D pair / python -c 'import torch'", "3D job's peak resident memory, GiB",
    ]  # fmt: skip
    assert all(r[-1] in ("yes", "no") for r in targets)
    assert [r[0] for r in _rows(out, "metrics:")] == [*METRIC_NAMES, "total"]
    assert [r[0] for r in _rows(out, "training:")] == ["MMIF-Net", "DenseFuse"]

    text = markdown.read_text()
    for title in ("### matmul rate", "### inference", "### engines", "### LatLRR", "### 3D job", "### metrics",
                  "### training", "### targets"):  # fmt: skip
        assert title in text
