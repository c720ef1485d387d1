"""The bundle's inference and evaluation entry points, run the way users run them, on the shipped samples."""

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmif_monai.fusion.methods import load_fusion_method
from mmif_monai.jobs.slices import FileJob, fuse_files
from mmif_monai.networks.pretrained import weights_digest

# runs bundle workflows in subprocesses: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "mmif_net"
SAMPLES = ROOT / "data" / "samples"


def _bundle(entry: str, configs: list[str], *overrides: str) -> subprocess.CompletedProcess:
    files = [str(BUNDLE / "configs" / name) for name in configs]
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", entry,
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str(files) if len(files) > 1 else files[0],
        *overrides,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


#: the config files each workflow runs from; evaluation loads its data in this process (no worker processes)
_WORKFLOWS = {
    "inference": (["inference.json"], ()),
    "evaluating": (["train.json", "evaluate.json"], ("--validation_cases", "[37]", "--num_workers", "0")),
}


def _workflow(name: str, *overrides: str) -> subprocess.CompletedProcess:
    configs, defaults = _WORKFLOWS[name]
    return _bundle(name, configs, *defaults, *overrides)


def test_inference_fuses_every_sample_pair_like_mmif_fuse(tmp_path):
    result = _bundle("inference", ["inference.json"], "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    # output into a pipe: no progress bar, and one summary line at the end
    assert re.fullmatch(rf"fused 6 pairs in [0-9.]+ s -> {tmp_path / 'out'}", result.stdout.splitlines()[-1])
    assert "it/s]" not in result.stderr
    written = sorted((tmp_path / "out").rglob("*.png"))
    # one folder of fused images per pair type, named for what it holds
    assert [path.relative_to(tmp_path / "out").parent.as_posix() for path in written] == [
        "mri_ct/fused", "mri_ct/fused", "mri_pet/fused", "mri_pet/fused", "mri_spect/fused", "mri_spect/fused"
    ]  # fmt: skip
    # the bundle path and the CLI path agree to within rounding, colour kept for PET
    fuse, _ = load_fusion_method("mmif-net")
    pet = FileJob(SAMPLES / "mri_pet/MRI/30061.png", SAMPLES / "mri_pet/PET/30061.png", tmp_path / "cli.png")
    fuse_files(fuse, [pet], progress=False)
    bundle_image = np.asarray(Image.open(tmp_path / "out/mri_pet/fused/30061.png"), dtype=int)
    cli_image = np.asarray(Image.open(pet.output), dtype=int)
    assert bundle_image.shape == cli_image.shape == (256, 256, 3)
    assert np.abs(bundle_image - cli_image).max() <= 1


def test_evaluating_writes_the_fusion_metrics_of_the_shipped_model(tmp_path):
    result = _bundle(
        "evaluating", ["train.json", "evaluate.json"],
        "--dataset_dir", str(SAMPLES), "--validation_cases", "[37]", "--output_dir", str(tmp_path),
        "--num_workers", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "metrics.csv") as f:
        metrics = {row[0]: float(row[1]) for row in csv.reader(f)}
    assert set(metrics) == {"val_qabf", "VIF", "SSIM", "MI", "PSNR"}
    summary = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
    assert re.fullmatch(rf"scored 2 pairs in [0-9.]+ s: {summary} -> {tmp_path}", result.stdout.splitlines()[-1])
    assert 0 < metrics["val_qabf"] < 1 and 0 < metrics["SSIM"] <= 2 and metrics["PSNR"] > 0
    # per image, by pair: one file per metric whose mean is the reported metric
    validation = sorted(f"mri_ct/{p.name}" for p in (SAMPLES / "mri_ct" / "MRI").iterdir())
    for name, value in metrics.items():
        with open(tmp_path / f"{name}_raw.csv") as f:
            rows = list(csv.DictReader(f))
        assert sorted(row["filename"] for row in rows) == validation
        assert np.mean([float(row["class0"]) for row in rows]) == pytest.approx(value, abs=1e-4)  # 4 decimals written


def test_evaluating_with_mlflow_tracking_records_a_finished_run_with_the_metrics_and_config(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    result = _bundle(
        "evaluating", ["train.json", "evaluate.json"],
        "--dataset_dir", str(SAMPLES), "--validation_cases", "[37]", "--output_dir", str(tmp_path),
        "--num_workers", "0",
        "--tracking", "mlflow",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "metrics.csv") as f:
        metrics = {row[0]: float(row[1]) for row in csv.reader(f)}
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    # closed (not left RUNNING), with the metrics MetricsSaver wrote
    assert run.info.status == "FINISHED"
    assert run.data.metrics == pytest.approx(metrics)
    # what was scored, as parameters a study can be searched by
    params = run.data.params
    assert params["weights_digest"] == weights_digest(BUNDLE / "models" / "model.pt")
    assert params["dataset_dir"] == str(SAMPLES) and params["images"] == "2" and params["pair_types"] == "['mri_ct']"
    assert params["scoring_protocol"] == "project" and params["validation_split"] == "atlas cases [37]"
    assert params["ssim_protocol"] == "literature"
    assert client.get_experiment(run.info.experiment_id).name == "mmif_net_evaluation"
    # the executed config says which weights and data were scored
    (config,) = client.list_artifacts(run.info.run_id, "config")
    local = Path(client.download_artifacts(run.info.run_id, config.path, str(tmp_path / "download")))
    assert str(SAMPLES) in local.read_text()


def test_evaluation_scores_ssim_by_the_default_protocol_of_mmif_evaluate_and_the_other_on_request():
    """One SSIM default for the library, mmif evaluate and the bundle's evaluation; ssim_protocol selects the other."""
    import inspect

    from monai.bundle import ConfigParser

    from mmif_monai.cli.main import build_parser
    from mmif_monai.metrics.fusion_metric import FusionMetric

    default = inspect.signature(FusionMetric).parameters["ssim_protocol"].default
    cli = build_parser().parse_args(["evaluate", "--fused", "F", "--a", "A", "--b", "B"])
    assert default == cli.ssim_protocol == "literature"
    for override in (None, "correct"):
        parser = ConfigParser()
        parser.read_config([str(BUNDLE / "configs" / name) for name in ("train.json", "evaluate.json")])
        if override is not None:
            parser["ssim_protocol"] = override
        expected = override or default
        assert parser.get_parsed_content("validate#additional_metrics#SSIM#metric_fn").ssim_protocol == expected
        assert parser.get_parsed_content("evaluation_params#ssim_protocol") == expected


def _zeroed_weights(folder: Path) -> Path:
    import torch

    from mmif_monai.networks.pretrained import read_checkpoint

    folder.mkdir()
    state, network = read_checkpoint(BUNDLE / "models" / "model.pt")  # {'model': ..., 'network': ...} or a state dict
    zeroed = {key: torch.zeros_like(value) for key, value in state.items()}
    torch.save({"model": zeroed, "network": network}, folder / "model.pt")
    return folder / "model.pt"


@pytest.mark.parametrize("workflow", ["inference", "evaluating"])
def test_damaged_weights_end_inference_and_evaluation_with_one_line_and_nothing_written(tmp_path, workflow):
    """Zeroed weights (what a short training run into the models folder left) fuse every pair into black: the
    workflow refuses them as mmif fuse does, before any data load, and writes nothing (with tracking on, no
    executed config or MLflow store either)."""
    weights = _zeroed_weights(tmp_path / "ckpt")
    out = tmp_path / "out"
    if workflow == "inference":
        result = _bundle("inference", ["inference.json"], "--ckpt_dir", str(weights.parent), "--output_dir", str(out))
    else:
        result = _bundle(
            "evaluating", ["train.json", "evaluate.json"],
            "--dataset_dir", str(SAMPLES), "--validation_cases", "[37]", "--weights_file", str(weights),
            "--output_dir", str(out), "--num_workers", "0", "--tracking", "mlflow",
        )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {weights}: these weights fuse a test pair into a constant image (0 everywhere); the weights are"
        " damaged (zeroed or diverged)"
    )
    assert not out.exists()


def test_inference_without_weights_in_ckpt_dir_says_where_it_looked(tmp_path):
    result = _bundle("inference", ["inference.json"], "--ckpt_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'model.pt'}: weights file not found")
    assert not (tmp_path / "o").exists()


def test_volume_inference_fuses_a_phantom_study_into_a_nifti_on_the_anatomical_grid(tmp_path):
    import nibabel as nib

    from mmif_monai.phantoms import write_phantom_nifti

    phantom = write_phantom_nifti(tmp_path / "study", shape=(64, 64, 8))
    out = tmp_path / "fused.nii.gz"
    result = _bundle(
        "volume_inference", ["inference.json"],
        "--anatomical_file", str(phantom.anatomical), "--functional_file", str(phantom.functional),
        "--output_file", str(out), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.fullmatch(rf"fused 8 slices in [0-9.]+ s \([0-9.]+ slices/s\) -> {out}", result.stdout.splitlines()[-1])
    fused, anatomical = nib.load(out), nib.load(phantom.anatomical)
    assert fused.shape == (*anatomical.shape, 3)  # PET fused in colour, RGB as a 4th dimension
    assert np.allclose(fused.affine, anatomical.affine)


def _tree(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "workflow, output, extra", [("inference", ".", ()), ("evaluating", "results", ("--tracking", "mlflow"))]
)
def test_inference_and_evaluation_never_write_into_their_data_set(tmp_path, workflow, output, extra):
    """Outputs never land in inputs (issue #34, item 6): `run inference --dataset_dir X --output_dir X` wrote the
    fused images into the data set (X/mri_ct/fused/...), and the evaluation its metrics. An output_dir that is the
    data set or lies inside it is refused in one line before any work, even MONAI's executed config (written
    with --tracking before the bundle's code runs) is removed again: the data set stays as it was."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLES, data)
    before = _tree(data)
    out = data / output if output != "." else data
    result = _workflow(workflow, "--dataset_dir", str(data), "--output_dir", str(out), *extra)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {out}: writing into this folder would modify the input {data}; inputs are never modified"
    )
    assert _tree(data) == before and sorted(p.name for p in data.iterdir()) == [
        "README.md",
        "mri_ct",
        "mri_pet",
        "mri_spect",
    ]


class _Trap:
    def __init__(self, folder: Path):
        self.folder = folder

    def __reduce__(self):
        return os.mkdir, (str(self.folder),)


@pytest.mark.parametrize("workflow, damage", [("evaluating", "truncated"), ("inference", "code")])
def test_unreadable_weights_end_inference_and_evaluation_in_one_line_naming_the_file(tmp_path, workflow, damage):
    """Issue #34, item 8: evaluation with a truncated model.pt (118 lines, the file not named), inference with a
    pickle that would run code (refused, but in 83 lines). One line naming the file; the pickle never runs (it
    would create a folder); nothing is written."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    weights = ckpt / "model.pt"
    if damage == "truncated":
        shipped = (BUNDLE / "models" / "model.pt").read_bytes()
        weights.write_bytes(shipped[: len(shipped) // 2])
    else:
        import torch

        torch.save({"model": _Trap(tmp_path / "pwned")}, weights)
    out = tmp_path / "out"
    # inference reads <ckpt_dir>/model.pt, evaluation its weights_file
    weights_option = ("--ckpt_dir", str(ckpt)) if workflow == "inference" else ("--weights_file", str(weights))
    result = _workflow(workflow, "--dataset_dir", str(SAMPLES), *weights_option, "--output_dir", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    problem = {
        "truncated": "not a PyTorch weights file (neither torch.save's zip format nor a pickle)",
        "code": "refused: the file holds code or objects other than tensors (weights_only); it was not run",
    }[damage]
    assert result.stderr.strip().splitlines()[-1] == f"error: {weights}: {problem}"
    assert not (tmp_path / "pwned").exists() and not out.exists()
