"""The ablation and λ sweep (scripts/ablation.py): variants trained through the bundle with their switches, FA
fine-tuned from its autoencoder, shared runs trained once, and the document; tiny budgets on the samples (CPU)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmif_monai.io.paths import REPO_ROOT, SAMPLES_DIR
from mmif_monai.studies import ablation
from mmif_monai.studies.ablation import ABLATION_VARIANTS, AblationSettings, lambda_variants, run_ablation
from mmif_monai.studies.training import BundleInputs, BundleRun, TrainingBudget

# trains every variant through the bundle: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

TINY = TrainingBudget(epochs=1, iterations_per_epoch=1, batch_size=2, crop_size=64)
WITHOUT_MSL, WITHOUT_FA = ABLATION_VARIANTS[1], ABLATION_VARIANTS[3]


def _settings(tmp_path: Path, **overrides) -> AblationSettings:
    values = {
        "out_dir": tmp_path / "out",
        "doc": tmp_path / "docs" / "ablation.md",
        "dataset_dir": SAMPLES_DIR,
        "autoencoder_budget": TINY,
        "fusion_budget": TINY,
        "variants": (WITHOUT_MSL, WITHOUT_FA),
        "lambdas": (10.0, 100.0),
        "limit": 1,
        "validation_cases": (37,),
    }
    return AblationSettings(**{**values, **overrides})


def test_variants_share_an_autoencoder_only_when_they_differ_in_fa_alone():
    assert WITHOUT_FA.autoencoder == ABLATION_VARIANTS[-1].autoencoder
    assert len({v.autoencoder for v in ABLATION_VARIANTS}) == 4
    sweep = lambda_variants([1, 10])
    assert [v.ssim_weight for v in sweep] == [1, 10] and not any(v.fa for v in sweep)
    assert sweep[1].autoencoder == WITHOUT_FA.autoencoder  # λ = 10 is the ablation's own autoencoder


def test_bundle_overrides_are_python_literals_the_bundle_reads():
    overrides = {"network_def#msl": False, "pretrained_file": Path("a b.pt")}
    command = BundleRun(["train.json"], Path("ck"), TINY, BundleInputs(SAMPLES_DIR), overrides).command()
    assert command[command.index("--network_def#msl") + 1] == "False"
    assert command[command.index("--pretrained_file") + 1] == "'a b.pt'"


def test_bundle_command_caches_and_loads_in_workers_only_when_asked():
    def value(command: list[str], key: str) -> str:
        return command[command.index(key) + 1]

    plain = BundleRun(["train.json"], Path("ck"), TINY, BundleInputs(SAMPLES_DIR)).command()
    assert value(plain, "--num_workers") == "0" and value(plain, "--train#dataset#cache_rate") == "0.0"
    long_run = BundleRun(
        ["train.json"], Path("ck"), TINY, BundleInputs(SAMPLES_DIR, num_workers=8, cache=True)
    ).command()
    assert value(long_run, "--num_workers") == "8" and value(long_run, "--train#dataset#cache_rate") == "1.0"
    assert value(long_run, "--validate#dataset#cache_rate") == "0.0"  # validation is off while training
    with pytest.raises(ValueError, match="num_workers"):
        BundleInputs(SAMPLES_DIR, num_workers=-1)


def test_ablation_trains_each_variant_through_the_bundle_and_writes_both_tables(tmp_path):
    settings = _settings(tmp_path)
    doc = run_ablation(settings)
    assert [p.name for p in (settings.out_dir / "checkpoints").iterdir()] == ["seed0"]
    checkpoints = settings.out_dir / "checkpoints" / "seed0"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "autoencoder-msl0-sa1-lambda10", "autoencoder-msl0-sa1-lambda10-fa",
        "autoencoder-msl1-sa1-lambda10", "autoencoder-msl1-sa1-lambda100",
    ]  # fmt: skip

    def model(folder: str) -> dict:
        return torch.load(checkpoints / folder / "checkpoint_epoch=1.pt", weights_only=True)["model"]

    # the switch reached the network: without MSL the stem's third module is a plain conv block
    assert any(k.startswith("stem.2.branches") for k in model("autoencoder-msl1-sa1-lambda10"))
    assert not any(k.startswith("stem.2.branches") for k in model("autoencoder-msl0-sa1-lambda10"))
    # FA fine-tuning started from its autoencoder and moved the fusion modules only
    autoencoder, fine_tuned = model("autoencoder-msl0-sa1-lambda10"), model("autoencoder-msl0-sa1-lambda10-fa")
    changed = {k for k in autoencoder if not torch.equal(autoencoder[k], fine_tuned[k])}
    assert changed and all(k.startswith("fusions.") for k in changed)
    # λ reached the loss: same seed and data, another SSIM weight, other weights
    ten, hundred = model("autoencoder-msl1-sa1-lambda10"), model("autoencoder-msl1-sa1-lambda100")
    assert any(not torch.equal(ten[k], hundred[k]) for k in ten if k.startswith("stem."))

    assert settings.doc.read_text() == doc
    assert settings.command_line() in doc
    for heading in ("## Ablation (the paper's Table 4)", "## λ sweep"):
        assert heading in doc
    for title in ("w/o MSL", "w/o FA (l1 rule)", "λ = 10 ", "λ = 100 "):
        assert f"| {title}" in doc
    assert "Qabf MRI–CT" in doc and "1 images per method" in doc
    assert "shipped weights (bundle README) are not among these rows" in doc  # tiny trainings are not the bundle's
    assert "Spread over" not in doc and "`--seeds 0 1 2` measures it" in doc  # one seed: no spread to show

    # the document names the row whose parameters the bundle ships, compared tensor by tensor
    shipped = tmp_path / "model.pt"
    torch.save(model("autoencoder-msl1-sa1-lambda10"), shipped)
    rows = {
        '"w/o MSL"': checkpoints / "autoencoder-msl0-sa1-lambda10-fa" / "checkpoint_epoch=1.pt",
        '"w/o FA (l1 rule)"': checkpoints / "autoencoder-msl1-sa1-lambda10" / "checkpoint_epoch=1.pt",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ablation, "DEFAULT_WEIGHTS", shipped)
        patch.setattr(ablation, "REPO_ROOT", tmp_path)
        assert (
            ablation._shipped_weights_row(rows)
            == 'The bundle\'s shipped weights (`model.pt`) are the row "w/o FA (l1 rule)".'
        )

    # a repeated run reuses every training and fused image
    stamps = {p: p.stat().st_mtime_ns for p in settings.out_dir.rglob("*.pt")}
    fused = {p: p.stat().st_mtime_ns for p in settings.out_dir.rglob("fused/*/*.png")}
    assert run_ablation(settings) == doc
    assert {p: p.stat().st_mtime_ns for p in settings.out_dir.rglob("*.pt")} == stamps
    assert {p: p.stat().st_mtime_ns for p in settings.out_dir.rglob("fused/*/*.png")} == fused


def test_each_seed_trains_its_own_variants_and_the_document_gives_their_spread(tmp_path, capsys):
    settings = _settings(tmp_path, variants=(WITHOUT_FA,), lambdas=(10.0,), seeds=(0, 1))
    doc = run_ablation(settings)
    last = capsys.readouterr().out.strip().splitlines()[-1]  # the run ends saying what it did, also in a log
    assert re.fullmatch(
        rf"trained and scored 2 variants \(2 seeds\) on \d+ validation pairs? in [0-9.]+ min -> {settings.doc}", last
    ), last

    def stem(seed: int) -> dict:
        folder = settings.out_dir / "checkpoints" / f"seed{seed}" / WITHOUT_FA.autoencoder
        return {
            k: v
            for k, v in torch.load(folder / "checkpoint_epoch=1.pt", weights_only=True)["model"].items()
            if k.startswith("stem.")
        }

    # the seed reached the bundle: same variant, budget and data, other initial weights and crops
    first, second = stem(0), stem(1)
    assert first.keys() == second.keys() and any(not torch.equal(first[k], second[k]) for k in first)
    assert "--seeds 0 1" in settings.command_line() and settings.command_line() in doc
    assert doc.count("Spread over the 2 seeds") == 2  # ablation and λ sweep
    spread_rows = [
        line for line in doc.splitlines() if line.startswith("| w/o FA (l1 rule) |") and " ± " in line and "–" in line
    ]
    assert len(spread_rows) == 1 and len(spread_rows[0].split(" | ")) == 5  # variant, Qabf, VIF, SSIM, MI
    assert "each image once per seed" in doc and "3 images per method" not in doc


def test_repeated_or_negative_seeds_are_refused_before_training(tmp_path):
    for seeds in ((0, 0), (-1,), ()):
        with pytest.raises(ValueError, match="--seeds needs one or more distinct non-negative seeds"):
            run_ablation(_settings(tmp_path, seeds=seeds))
    assert not (tmp_path / "out").exists()


def test_an_output_folder_of_another_budget_is_refused_before_training(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "budget.json").write_text(json.dumps({"autoencoder": {}, "fusion": {}}))
    with pytest.raises(ValueError, match="other training budgets"):
        run_ablation(_settings(tmp_path))
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_script_refuses_a_negative_lambda_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/ablation.py", "-o", str(tmp_path / "out"), "--lambdas", "-1"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "error: --lambdas needs one or more non-negative SSIM weights" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
