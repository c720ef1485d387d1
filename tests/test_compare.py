"""``mmif compare``: the bundle overrides of every compared method, training through the bundle, and the report,
on the shipped samples with tiny budgets (CPU)."""

import re
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from mmif_monai.cli.main import main
from mmif_monai.io.paths import BUNDLE_DIR, SAMPLES_DIR
from mmif_monai.metrics.batched import METRIC_NAMES
from mmif_monai.networks import DenseFuse
from mmif_monai.studies import (
    COMPARISON_METHODS,
    BundleInputs,
    ComparisonSettings,
    TrainingBudget,
    bundle_config_files,
    load_comparison_network,
    run_comparison,
    train_method,
)

# trains the compared networks: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

TINY = TrainingBudget(epochs=1, iterations_per_epoch=1, batch_size=2, crop_size=64)


@pytest.mark.parametrize(
    "values", [{"epochs": 0}, {"batch_size": 0}, {"crop_size": 32}, {"learning_rate": 0.0}], ids=lambda v: next(iter(v))
)
def test_budget_rejects_values_that_cannot_train(values):
    with pytest.raises(ValueError):
        TrainingBudget(**values)


def test_budget_describes_itself():
    assert TINY.iterations == 1
    assert "1 iterations" in TINY.describe() and "64x64" in TINY.describe()


@pytest.mark.parametrize("name", list(COMPARISON_METHODS))
def test_bundle_configs_build_each_methods_network_task_and_loss(name):
    files = bundle_config_files(name)
    assert all(f.is_file() for f in files)
    assert files[0].name == "train.json" and files[-1].name == f"{name}.json"
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update(
        {
            "bundle_root": str(BUNDLE_DIR),
            "dataset_dir": str(SAMPLES_DIR),
            "crop_size": [64, 64],
            "device": "$torch.device('cpu')",
        }
    )
    network = parser.get_parsed_content("network")
    assert type(network) is COMPARISON_METHODS[name].build
    task, loss = parser.get_parsed_content("train#task"), parser.get_parsed_content("train#loss")
    # paired methods see (anatomical, functional) items; autoencoders single images
    image = torch.rand(2, 2 if COMPARISON_METHODS[name].paired else 1, 64, 64)
    value = loss(task(image), image)
    value.backward()
    assert torch.isfinite(value)
    assert any(p.grad is not None for p in network.parameters())
    trainer = parser["train#trainer"]["_target_"]
    assert trainer.endswith("AdversarialTrainer" if name == "fusiongan" else "SupervisedTrainer")


@pytest.mark.parametrize("name", ["ifcnn", "fusiongan"])
def test_training_through_the_bundle_gives_a_loadable_checkpoint(tmp_path, name):
    # one autoencoder on single images, one adversarial fusion on pairs: the two ways through train.json
    final, seconds = train_method(name, tmp_path / name, TINY, BundleInputs(SAMPLES_DIR, validation_cases=(37,)))
    assert final.name == "checkpoint_epoch=1.pt" and seconds > 0
    checkpoint = torch.load(final, weights_only=True)
    if name == "fusiongan":
        assert {"discriminator", "d_optimizer"} <= set(checkpoint)
    network = load_comparison_network(name, final)
    with torch.no_grad():
        fused = network(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    assert fused.shape == (1, 1, 64, 64)
    # a finished run is reused, not repeated, and still reports the time its training took
    assert train_method(name, tmp_path / name, TINY, BundleInputs(SAMPLES_DIR, validation_cases=(37,))) == (
        final,
        seconds,
    )


def _settings(tmp_path: Path, weights: Path, **overrides) -> ComparisonSettings:
    values = {
        "out_dir": tmp_path / "out",
        "doc": tmp_path / "docs" / "results.md",
        "figure": tmp_path / "docs" / "grid.png",
        "dataset_dir": SAMPLES_DIR,
        "budget": TINY,
        "methods": ["densefuse"],
        "weights": {"densefuse": weights},
        "limit": 1,
        "validation_cases": (37,),  # one pair type (MRI-CT) keeps the run short
        "timing_repeats": 1,
    }
    values.update(overrides)
    return ComparisonSettings(**values)


def test_report_holds_what_it_prints(tmp_path, capsys):
    weights = tmp_path / "densefuse.pt"
    torch.save(DenseFuse().state_dict(), weights)
    settings = _settings(tmp_path, weights)
    settings.released = {"densefuse": weights}  # as an authors' release would be given: rows of its own
    doc = run_comparison(settings)
    printed = capsys.readouterr().out
    assert settings.doc.read_text() == doc
    assert settings.figure.stat().st_size > 0
    assert "MRI–CT (the paper's Table 3): 1 pairs" in doc and "MRI–PET" not in doc
    rows = [line for line in doc.splitlines() if line.startswith(("| DenseFuse |", "| MMIF-Net |", "| latlrr |"))]
    assert len(rows) == 3 + 3 + 3  # the metric tables under both protocols, plus the size/speed table
    assert "published protocol: CDDFuse's evaluator" in doc
    for rule in ("l1", "addition"):  # DenseFuse's release with both of its paper's rules, in both tables
        assert doc.count(f"| DenseFuse (authors' weights, {rule} rule) |") == 2
    assert f"--released densefuse={weights}" in settings.command_line()
    for row in rows:
        assert row in printed  # every number in the document was printed by the run
    # 5 classical rules, DenseFuse, MMIF-Net and the release's two rows; the run ends saying so, also in a log
    last = printed.strip().splitlines()[-1]
    expected = rf"compared 9 methods on 1 validation pair in [0-9.]+ min -> {settings.doc}, {settings.figure}"
    assert re.fullmatch(expected, last), last
    assert all(metric in doc for metric in METRIC_NAMES)
    assert settings.command_line() in doc
    assert "--weights densefuse=" in settings.command_line() and "--validation-cases 37" in settings.command_line()
    # a second run with another budget must not mix its checkpoints with these
    with pytest.raises(ValueError, match="budget"):
        run_comparison(_settings(tmp_path, weights, budget=TrainingBudget(epochs=2)))


def test_bad_inputs_stop_the_run_before_anything_is_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        run_comparison(_settings(tmp_path, tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="unknown comparison method"):
        run_comparison(_settings(tmp_path, tmp_path / "missing.pt", methods=["u2fusion"]))
    assert not (tmp_path / "out").exists() and not (tmp_path / "docs").exists()


def test_cli_reports_a_malformed_weights_option_in_one_line(capsys, monkeypatch, tmp_path):
    # before it looks for data: the option's mistake is reported on a machine without the data set too
    monkeypatch.setattr("mmif_monai.io.paths.DEFAULT_DATASET_DIR", tmp_path / "absent")
    assert main(["compare", "--weights", "densefuse"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mmif: error: --weights expects METHOD=FILE, got 'densefuse'"]
