"""Smoke runs of the scripts at tiny sizes: they must keep working, their numbers are not checked here."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.networks import MMIFNet
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, read_checkpoint

# runs the study scripts: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_validation_comparison_writes_a_table_per_pair_type_and_a_figure(tmp_path):
    doc, figure = tmp_path / "validation.md", tmp_path / "grid.png"
    result = _script(
        "scripts/evaluate_validation.py", "--limit", "1", "--methods", "average", "mmif-net", "max-autoencoded",
        "--out", str(tmp_path / "out"), "--doc", str(doc), "--figure", str(figure),
        "--figure-methods", "mmif-net", "average",
        # the shipped samples hold validation pairs of each type, so the test does not depend on the full data set
        "--dataset-dir", str(SAMPLES_DIR),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    for pair_type in ("mri_ct", "mri_pet", "mri_spect"):
        assert f"## {pair_type} (1 pairs)" in text
    assert text.count("| mmif-net |") == 3 and text.count("| max-autoencoded |") == 3
    # MMIF-Net's paired differences from the classical rule scored, on the quality target's metrics
    assert text.count("| mmif-net − average |") == 3 and "| method − reference | Qabf | VIF | SSIM |" in text
    # the regeneration command names the methods asked for; the diagnostic is said to be no fusion method
    assert "evaluate_validation.py --methods average mmif-net max-autoencoded\n" in text
    assert "`max-autoencoded` is no fusion method" in text
    # the methods sentence names the one classical baseline scored, not all of them
    assert "Methods: the classical baseline `average` (docs/metrics.md) and MMIF-Net with the bundle's" in text
    # the diagnostic depends on the weights, so its fusions are filed under their digest too
    digest = hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()[:12]
    fused = sorted(p.name for p in (tmp_path / "out" / "mri_ct" / "fused").iterdir())
    assert fused == ["average", f"max-autoencoded-{digest}", f"mmif-net-{digest}"]
    # one row per pair type (one pair each); columns: the two sources and the two methods asked for
    with Image.open(figure) as image:
        width, height = image.size
    assert abs(width / height - 4 / 3) < 0.05, (width, height)


def test_colour_fidelity_writes_colour_or_bone_and_anatomy_side_by_side_per_pair_type(tmp_path):
    doc = tmp_path / "colour.md"
    result = _script(
        "scripts/colour_fidelity.py", "--limit", "1", "--methods", "average", "mmif-net", "--limits", "0.02:0.12",
        "--out", str(tmp_path / "out"), "--doc", str(doc), "--figure", str(tmp_path / "grid.png"),
        "--dataset-dir", str(SAMPLES_DIR),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    assert "colour_fidelity.py --methods average mmif-net --limits 0.02:0.12 --limit 1\n" in text
    for pair_type in ("mri_pet", "mri_spect"):
        assert f"## {pair_type} (1 pairs)" in text
    # a grey pair has no colour to keep: MRI–CT is scored on its bone, without limits
    assert "## mri_ct (1 pairs): bone" in text and text.count("## mri_ct") == 1
    assert "| method | bone pixels | brightness kept | greyed | bound | Qabf | SSIM | Q MRI/F | SSIM F,MRI |" in text
    # per pair type: each method without a limit and with the one asked for, the default of --colour-fidelity
    assert text.count("| MMIF-Net | none |") == 2 and text.count("| average | level 0.02, detail 0.12 (`--colour") == 2
    assert "| ΔE00 mean | ΔE00 p95 | moved | worst step mean | bound | Qabf | SSIM | Q MRI/F | SSIM F,MRI |" in text
    assert (tmp_path / "grid.png").is_file()
    # output into a pipe: no progress bars, and the run ends with one line saying what it did
    last = result.stdout.strip().splitlines()[-1]
    expected = rf"scored 2 methods on 3 validation pairs in [0-9.]+ min -> {doc}, {tmp_path / 'grid.png'}"
    assert re.fullmatch(expected, last), last
    assert "it/s]" not in result.stderr and "pair/s]" not in result.stderr


def test_validation_under_the_published_protocol_sets_mmif_net_against_the_quality_targets(tmp_path):
    doc = tmp_path / "validation.md"
    result = _script(
        "scripts/evaluate_validation.py", "--limit", "1", "--methods", "max", "mmif-net", "--protocol", "published",
        "--out", str(tmp_path / "out"), "--doc", str(doc), "--figure", str(tmp_path / "grid.png"),
        "--figure-methods", "mmif-net", "--dataset-dir", str(SAMPLES_DIR),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    assert "--protocol published" in text and text.count("published protocol: CDDFuse's evaluator") == 3
    assert text.count("| metric | MMIF-Net ÷ max | target (CDDFuse ÷ max) | met |") == 3
    assert "| SCD |" in text and "| MI |" in text and "(goal: 6)" in text


def test_the_shifted_variant_scores_the_same_pairs_with_darker_anatomical_images(tmp_path):
    doc, out = tmp_path / "shifted.md", tmp_path / "out"
    result = _script(
        "scripts/evaluate_validation.py", "--limit", "1", "--methods", "max", "mmif-net", "--protocol", "published",
        "--shifted", "--out", str(out), "--doc", str(doc), "--figure", str(tmp_path / "grid.png"),
        "--figure-methods", "mmif-net", "--dataset-dir", str(SAMPLES_DIR),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    assert "--protocol published --shifted" in text and "its shifted variant" in text
    assert text.count("| metric | MMIF-Net ÷ max | target (CDDFuse ÷ max) | met |") == 3
    means = [tuple(map(float, m)) for m in re.findall(r"mean grey ([0-9.]+) → ([0-9.]+) of 255", text)]
    assert len(means) == 3
    for before, after in means:
        # the gamma halves the mean exactly; writing 8-bit PNGs moves each pixel by at most half a grey level, and
        # the doc prints one decimal
        assert abs(after - before / 2) <= 0.5 + 0.1, (before, after)
    for pair_type in ("mri_ct", "mri_pet", "mri_spect"):
        (shifted,) = (out / "shifted" / "anatomical" / pair_type).iterdir()
        original = SAMPLES_DIR / pair_type / "MRI" / shifted.name
        assert np.asarray(Image.open(shifted)).mean() < np.asarray(Image.open(original)).mean()


def test_candidates_are_compared_on_both_variants_with_colour_and_bone(tmp_path):
    doc = tmp_path / "candidates.md"
    result = _script(
        "scripts/compare_candidates.py", f"shipped={DEFAULT_WEIGHTS}", "--limit", "1", "--out", str(tmp_path / "out"),
        "--doc", str(doc), "--dataset-dir", str(SAMPLES_DIR), "--validation-cases", "10", "30", "37",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    digest = hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()[:12]
    row = next(line for line in text.splitlines() if line.startswith(f"| shipped | {digest} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    for counts in cells[2:4]:  # met on the split and on its shifted variant, per pair type and in all
        match = re.fullmatch(r"(\d) / (\d) / (\d) \((\d+)\)", counts)
        assert match, counts
        per_type = [int(n) for n in match.groups()[:3]]
        assert sum(per_type) == int(match.group(4)) and all(0 <= n <= 8 for n in per_type)
    assert re.fullmatch(r"[0-9.]+ / [0-9.]+ / [0-9.]+ % [✓✗]", cells[4])  # PET colour
    assert re.fullmatch(r"[0-9.]+ % [✓✗]", cells[6])  # CT bone greyed
    assert text.count("MMIF-Net ÷ pixel-max (bold: target met)") == 6  # 3 pair types x 2 variants


RELEASED = ROOT.parent / "shared" / "weights"  # the peers' released checkpoints, beside the repository, never in it


@pytest.mark.skipif(not (RELEASED / "densefuse_gray.model").is_file(), reason="the authors' weights are not here")
def test_candidates_are_set_against_the_peers_released_weights(tmp_path):
    doc = tmp_path / "candidates.md"
    result = _script(
        "scripts/compare_candidates.py", f"shipped={DEFAULT_WEIGHTS}", "--limit", "1", "--out", str(tmp_path / "out"),
        "--doc", str(doc), "--dataset-dir", str(SAMPLES_DIR), "--validation-cases", "10", "30", "37",
        "--released", f"densefuse={RELEASED / 'densefuse_gray.model'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    assert "## Against the authors' released weights" in text
    for rule in ("l1 rule", "addition rule"):  # DenseFuse once per rule of its paper, as mmif compare names them
        row = next(line for line in text.splitlines() if f"| DenseFuse (authors' weights, {rule}) |" in line)
        assert re.search(r"\| \d / \d / \d of 8 \| \d / \d / \d of 8 \|$", row), row


def test_validation_comparison_scores_other_weights_than_the_shipped_ones(tmp_path):
    weights = tmp_path / "candidate.pt"
    # a candidate near the shipped weights (a randomly initialised network fuses into black, which is refused)
    shipped, network = read_checkpoint(DEFAULT_WEIGHTS)
    moved = {key: value * 1.01 if value.is_floating_point() else value for key, value in shipped.items()}
    torch.save({"model": moved, "network": network}, weights)
    doc, out = tmp_path / "validation.md", tmp_path / "out"
    result = _script(
        "scripts/evaluate_validation.py", "--limit", "1", "--methods", "mmif-net", "--weights", str(weights),
        "--out", str(out), "--doc", str(doc), "--figure", str(tmp_path / "grid.png"), "--figure-methods", "mmif-net",
        "--dataset-dir", str(SAMPLES_DIR),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = doc.read_text()
    assert f"--weights {weights}" in text and f"Methods: MMIF-Net with the weights in `{weights}` (bundles/" in text
    # the fusions are filed under the candidate's digest, never mixed with the shipped weights' ones
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    assert [p.name for p in (out / "mri_ct" / "fused").iterdir()] == [f"mmif-net-{digest}"]


def test_shipped_weights_script_trains_both_stages_and_writes_the_fine_tuned_parameters(tmp_path):
    out = tmp_path / "shipped"
    result = _script(
        "scripts/train_shipped_weights.py", "-o", str(out), "--dataset-dir", str(SAMPLES_DIR),
        "--validation-cases", "37",
        "--epochs", "1", "--iterations-per-epoch", "1", "--fusion-epochs", "1", "--fusion-iterations-per-epoch", "2",
        "--batch-size", "2", "--crop-size", "64", "--num-workers", "1", "--fusion-correlation-weight", "0.5",
        "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((out / "training.json").read_text())
    assert record["fusion"]["iterations_per_epoch"] == 2 and record["final_checkpoint"] == "checkpoint_epoch=1.pt"
    assert record["images_seen"] == {"autoencoder": 1 * 2, "fusion": 2 * 2}  # iterations x batch
    assert record["threads"] == 1 and "1 torch threads" in record["hardware"]
    assert record["total_seconds"] == pytest.approx(sum(record["training_seconds"].values()))
    assert record["command"].startswith("python scripts/train_shipped_weights.py -o ")
    stage1, stage2 = ((out / stage / "train.log").read_text() for stage in ("autoencoder", "fusion"))
    # the recipe's loss weights reach stage 2 (the bundle logs its overrides), not stage 1; both stages draw crops
    # on the foreground with the scanner augmentation
    assert f"> gradient_weight: {record['fusion_gradient_weight']}" in stage2 and "gradient_weight" not in stage1
    assert record["fusion_correlation_weight"] == 0.5 and "> fusion_correlation_weight: 0.5" in stage2
    assert "augment.json" in stage1 and "augment_fusion.json" in stage2
    assert "> crop_background_weight: 0.01" in stage1 and "> crop_background_weight: 0.01" in stage2
    assert "> trainable_modules: '$None'" in stage2
    assert record["model_sha256"] == hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    # no --network: train.json's network, its arguments recorded beside the parameters
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["network"] == record["network"] == {
        "msl": True, "sa": True, "fa": True, "decompose": False, "features": [16, 16, 32, 32, 48], "stem_features": 8
    }  # fmt: skip
    shipped = saved["model"]
    fine_tuned = torch.load(out / "fusion" / "checkpoint_epoch=1.pt", weights_only=True)["model"]
    autoencoder = torch.load(out / "autoencoder" / "checkpoint_epoch=1.pt", weights_only=True)["model"]
    assert shipped.keys() == fine_tuned.keys() and all(torch.equal(shipped[k], fine_tuned[k]) for k in shipped)
    # stage 2 starts from stage 1 and trains the whole network by default
    changed = {k.split(".")[0] for k in shipped if not torch.equal(shipped[k], autoencoder[k])}
    assert {"stem", "levels", "fusions", "head"} <= changed, changed
    assert record["fusion_trainable"] == "all"
    MMIFNet(**saved["network"]).load_state_dict(shipped)


def test_shipped_weights_script_trains_only_the_modules_named(tmp_path):
    out = tmp_path / "shipped"
    result = _script(
        "scripts/train_shipped_weights.py", "-o", str(out), "--dataset-dir", str(SAMPLES_DIR),
        "--validation-cases", "37", "--epochs", "1", "--iterations-per-epoch", "1", "--fusion-epochs", "1",
        "--fusion-iterations-per-epoch", "1", "--batch-size", "2", "--crop-size", "64", "--fusion-trainable", "fusions",
        "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = torch.load(out / "model.pt", weights_only=True)["model"]
    autoencoder = torch.load(out / "autoencoder" / "checkpoint_epoch=1.pt", weights_only=True)["model"]
    changed = {k.split(".")[0] for k in shipped if not torch.equal(shipped[k], autoencoder[k])}
    assert changed == {"fusions"}, changed  # FA alone, the paper's stage 2
    assert json.loads((out / "training.json").read_text())["fusion_trainable"] == ["fusions"]


def test_shipped_weights_script_names_a_missing_data_set_folder(tmp_path):
    result = _script(
        "scripts/train_shipped_weights.py", "-o", str(tmp_path / "out"), "--dataset-dir", str(tmp_path / "none")
    )
    assert result.returncode == 1
    # the last line: importing the deploy extra may print a stack-size notice first
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"train_shipped_weights: error: {tmp_path / 'none'}: data set folder not found (--dataset-dir)"
    )
    assert not (tmp_path / "out").exists()
