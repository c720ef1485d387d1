"""MONAI's bundle tools on the MMIF-Net bundle: model-zoo's full verification, metadata schema, declared
input/output format, workflow properties, TorchScript export."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.apps.utils import HashCheckError

from mmif_monai.bundle_checks import BundleCheckError, verify_bundle
from mmif_monai.networks.pretrained import load_mmif_net

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "mmif_net"
CONFIG_ARGS = [
    "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
    "--config_file", str(BUNDLE / "configs" / "train.json"),
    "--bundle_root", str(BUNDLE),
]  # fmt: skip


def _bundle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


SCHEMA = ROOT / "tests" / "data" / "meta_schema_20240725.json"  # MONAI's schema, kept offline (tests/data/README.md)
SAMPLE_OVERRIDES = {"dataset_dir": str(ROOT / "data" / "samples"), "validation_cases": [37], "num_workers": 0}


@pytest.mark.slow
def test_the_model_zoo_full_verification_passes():
    result = subprocess.run(
        [sys.executable, "scripts/verify_bundle.py"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    verified = [line.split(":")[0] for line in result.stdout.splitlines() if line.endswith(": verified")]
    assert verified == [
        "files",
        "version and changelog",
        "metadata schema",
        "properties",
        "network input and output",
        "TorchScript export",
    ]


def _bundle_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "mmif_net"
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("docs", "eval"))
    return copy


def test_the_model_zoo_checks_refuse_a_bundle_without_licence_or_changelog_entry(tmp_path):
    bundle = _bundle_copy(tmp_path)
    (bundle / "LICENSE").unlink()
    with pytest.raises(BundleCheckError, match="missing LICENSE"):
        verify_bundle(bundle, SCHEMA, tmp_path, SAMPLE_OVERRIDES, report=lambda line: None)
    shutil.copyfile(BUNDLE / "LICENSE", bundle / "LICENSE")
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    metadata["version"] = "99.0.0"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(BundleCheckError, match="'99.0.0' has no entry in its changelog"):
        verify_bundle(bundle, SCHEMA, tmp_path, SAMPLE_OVERRIDES, report=lambda line: None)


def test_a_changed_copy_of_monais_schema_is_refused_by_its_hash(tmp_path):
    # a copy that no longer requires network_data_format would pass metadata the model zoo rejects
    schema = json.loads(SCHEMA.read_text())
    schema["required"].remove("network_data_format")
    loosened = tmp_path / SCHEMA.name
    loosened.write_text(json.dumps(schema))
    with pytest.raises(HashCheckError, match="hash check of existing file failed"):
        verify_bundle(BUNDLE, loosened, tmp_path, SAMPLE_OVERRIDES, report=lambda line: None)


def test_the_property_check_names_a_training_workflow_without_an_inferer(tmp_path):
    bundle = _bundle_copy(tmp_path)
    train = json.loads((bundle / "configs" / "train.json").read_text())
    del train["train"]["inferer"], train["train"]["trainer"]["inferer"]
    (bundle / "configs" / "train.json").write_text(json.dumps(train))
    passed = []
    missing = r"train.json \(train\): Property 'train_inferer' with config ID 'train::inferer' not in the config"
    with pytest.raises(BundleCheckError, match=missing):
        verify_bundle(bundle, SCHEMA, tmp_path, SAMPLE_OVERRIDES, report=passed.append)
    assert passed == ["files: verified", "version and changelog: verified", "metadata schema: verified"]


@pytest.mark.slow  # MONAI's bundle command in a subprocess
def test_verify_metadata_accepts_the_bundle_metadata():
    result = _bundle(
        "verify_metadata", "--meta_file", str(BUNDLE / "configs" / "metadata.json"), "--filepath", str(SCHEMA)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "metadata is verified with no error" in result.stdout + result.stderr


@pytest.mark.slow  # MONAI's bundle command in a subprocess
def test_verify_metadata_rejects_metadata_without_its_network_format(tmp_path):
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    del metadata["network_data_format"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    result = _bundle("verify_metadata", "--meta_file", str(broken), "--filepath", str(SCHEMA))
    assert result.returncode != 0
    assert "network_data_format" in result.stderr


@pytest.mark.slow  # MONAI's bundle command in a subprocess
@pytest.mark.parametrize("size", [[], ["--n", "5"]], ids=["default n (16 x 16)", "n = 5 (80 x 80)"])
def test_verify_net_in_out_accepts_the_declared_format(size):
    # spatial_shape "16*n": the default n = 1 is a 16 x 16 slice, fused on MMIF-Net's 64 x 64 canvas
    result = _bundle("verify_net_in_out", "network_def", *CONFIG_ARGS, *size)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "verified with no error" in result.stdout + result.stderr


@pytest.mark.slow  # MONAI's bundle command in a subprocess
# torch 2.13 deprecates TorchScript, but the model zoo's format is still a TorchScript file (ckpt_export writes it):
# loading it back is the point of the test
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_ckpt_export_gives_torchscript_equal_to_the_eager_model(tmp_path):
    exported = tmp_path / "model.ts"
    result = _bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        str(exported),
        "--ckpt_file",
        str(BUNDLE / "models" / "model.pt"),
        "--key_in_ckpt",  # model.pt holds {"model": state dict, "network": its arguments}
        "model",
        *CONFIG_ARGS,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    scripted = torch.jit.load(str(exported))
    eager = load_mmif_net().network
    x = torch.rand(2, 2, 96, 112)
    with torch.no_grad():
        assert torch.allclose(scripted(x), eager(x), atol=1e-6)
