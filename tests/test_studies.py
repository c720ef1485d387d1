"""The studies wing's shared pieces: the method lookup, the bundle-run description, the table writer, the document
writer."""

from pathlib import Path

import pytest
import torch

from mmif_monai.fusion.classical import max_fusion
from mmif_monai.io.markdown import markdown_rows
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.networks import DenseFuse, MMIFNet
from mmif_monai.networks.inference import InferenceNetwork
from mmif_monai.studies import BundleInputs, BundleRun, TrainingBudget, load_method
from mmif_monai.studies.documents import generated_preamble, write_document
from mmif_monai.studies.methods import method_title, uses_weights
from mmif_monai.studies.tables import Table, format_number


def test_markdown_rows_has_a_rule_under_the_header_and_one_line_per_row():
    lines = markdown_rows(["a", "b"], [[1, "x"], [2.5, ""]])
    assert lines == ["| a | b |", "| --- | --- |", "| 1 | x |", "| 2.5 |  |"]


def test_a_table_prints_aligned_text_and_writes_the_same_cells_as_markdown():
    table = Table(["method", "ms"], title="speed", notes=["medians"])
    table.add("DenseFuse", "10.0")
    table.add("MMIF-Net", "123.4")
    text = table.text().splitlines()
    assert text[0] == "== speed" and text[-1] == "   medians"
    assert text[3].endswith(" 10.0") and len(text[3]) == len(text[4])  # numbers right-aligned to one width
    markdown = table.markdown()
    assert markdown.startswith("### speed\n\n| method | ms |") and "| MMIF-Net | 123.4 |" in markdown
    assert markdown.endswith("- medians\n")
    assert not Table(["a"]).markdown().startswith("#")  # an untitled table is a bare Markdown table


@pytest.mark.parametrize(
    ("value", "text"), [(None, "n/a"), (0, "0"), (1234.5, "1,234"), (0.012345, "0.0123"), (3.2e-5, "3.20e-05")]
)
def test_numbers_keep_three_significant_digits(value, text):
    assert format_number(value) == text


def test_one_lookup_finds_classical_rules_mmif_net_and_the_compared_networks(tmp_path):
    fuse, description = load_method("max")
    assert fuse is max_fusion and "classical" in description
    network, description = load_method("mmif-net")
    assert isinstance(network, InferenceNetwork) and isinstance(network.network, MMIFNet)
    weights = tmp_path / "densefuse.pt"
    torch.save(DenseFuse().state_dict(), weights)
    network, description = load_method("densefuse", weights)
    assert isinstance(network, InferenceNetwork) and isinstance(network.network, DenseFuse)
    assert str(weights) in description
    with pytest.raises(ValueError, match="needs a weights file"):
        load_method("densefuse")
    with pytest.raises(ValueError, match="unknown fusion method"):
        load_method("nonsense")
    assert [uses_weights(m) for m in ("max", "mmif-net", "max-autoencoded", "ifcnn")] == [False, True, True, True]
    assert [method_title(m) for m in ("max", "mmif-net", "ifcnn")] == ["max", "MMIF-Net", "IFCNN"]


def test_a_bundle_run_is_the_command_a_user_would_type():
    run = BundleRun(
        ["train.json"], Path("ck"), TrainingBudget(epochs=3), BundleInputs(SAMPLES_DIR, (37,), "cpu"), {"seed": 2}
    )
    command = run.command()
    assert command[1:5] == ["-m", "monai.bundle", "run", "training"]
    for key, value in {"--epochs": "3", "--val_interval": "4", "--validation_cases": "[37]", "--seed": "2"}.items():
        assert command[command.index(key) + 1] == value
    assert command[command.index("--output_dir") + 1] == str(Path("ck") / "eval")


def test_a_document_starts_with_its_regeneration_command_and_is_written_whole(tmp_path):
    lines = generated_preamble("Title", "python scripts/x.py --a 1", "More here.")
    assert lines[0] == "# Title" and lines[2].endswith("(regenerate instead). More here.")
    assert "    python scripts/x.py --a 1" in lines
    path = tmp_path / "docs" / "x.md"
    text = write_document(path, [*lines, "body"])
    assert path.read_text() == text and text.endswith("body\n")
    assert [p.name for p in path.parent.iterdir()] == ["x.md"]  # no temporary file left beside it
