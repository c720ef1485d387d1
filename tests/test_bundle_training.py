"""The bundle's training entry point, run the way users run it, on the shipped samples (tiny, CPU)."""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmif_monai.engines import latest_checkpoint
from mmif_monai.networks import MMIFNet
from mmif_monai.networks.pretrained import read_checkpoint

# runs bundle training in subprocesses: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "mmif_net"


SAMPLE_DATA = ("--dataset_dir", str(ROOT / "data" / "samples"), "--validation_cases", "[37]")


def _train(
    ckpt_dir: Path | None,
    epochs: int,
    *extra: str,
    configs: tuple[str, ...] = ("train.json",),
    data: tuple[str, ...] = SAMPLE_DATA,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess:
    """Train as a user would; ``ckpt_dir`` None leaves the config's default, under ``outputs/`` of ``cwd``."""
    config_files = [str(BUNDLE / "configs" / name) for name in configs]
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str(config_files) if len(config_files) > 1 else config_files[0],
        *data,
        *(("--ckpt_dir", str(ckpt_dir)) if ckpt_dir is not None else ()),
        "--epochs", str(epochs),
        "--max_iterations_per_epoch", "2",
        "--batch_size", "2",
        "--crop_size", "[64, 64]",
        "--num_workers", "0",
        *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    return ckpt, _train(ckpt, epochs=1)


def test_training_runs_and_saves_model_and_checkpoint(trained):
    ckpt, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    assert (ckpt / "model.pt").is_file()
    assert (ckpt / "checkpoint_epoch=1.pt").is_file()
    assert "val_qabf" in result.stdout + result.stderr
    # the best-model file is a plain state dict of train.json's network, the configuration the shipped weights record
    _, shipped_network = read_checkpoint(BUNDLE / "models" / "model.pt")
    MMIFNet(**shipped_network).load_state_dict(torch.load(ckpt / "model.pt", weights_only=True))


def test_training_resumes_from_the_last_checkpoint(trained):
    ckpt, first = trained
    assert first.returncode == 0, first.stderr[-3000:]
    before = torch.load(ckpt / "checkpoint_epoch=1.pt", weights_only=True)
    result = _train(ckpt, epochs=2)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "Epoch: 1/2" not in log  # epoch 1 was not trained again
    assert "Epoch: 2/2" in log
    after = torch.load(ckpt / "checkpoint_epoch=2.pt", weights_only=True)
    # Ignite stores the trainer's progress as its iteration count: 2 iterations per epoch
    assert before["trainer"]["iteration"] == 2 and after["trainer"]["iteration"] == 4
    assert latest_checkpoint(ckpt).name == "checkpoint_epoch=2.pt"  # the next resume starts from here


def test_fusion_finetuning_trains_only_the_learned_fusion_modules(tmp_path):
    pretrained = BUNDLE / "models" / "model.pt"
    result = _train(tmp_path, 1, configs=("train.json", "train_fusion.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    before = torch.load(pretrained, weights_only=True)["model"]  # the shipped form: {"model", "network"}
    after = torch.load(tmp_path / "model.pt", weights_only=True)
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("fusions.") for key in changed)  # batch-norm statistics included


def test_mlflow_tracking_records_params_metrics_samples_and_model(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    out = tmp_path / "out"
    result = _train(tmp_path / "ckpt", 1, "--output_dir", str(out), "--tracking", "mlflow")
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlruns.db'}")  # MONAI's default store under output_dir
    runs = [run for exp in client.search_experiments() for run in client.search_runs(exp.experiment_id)]
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "mmif_net_training"
    assert run.data.params["learning_rate"] == "0.002" and run.data.params["network"] == "MMIFNet"
    assert run.data.params["seed"] == "0"  # the run can be repeated from its parameters
    # the data and the split actually used, not the settings a fraction or a list would have overridden
    assert run.data.params["dataset_dir"] == str(ROOT / "data" / "samples")
    assert run.data.params["validation_split"] == "atlas cases [37]" and "validation_cases" not in run.data.params
    assert {"train_loss", "val_qabf", "VIF"} <= set(run.data.metrics)
    artifacts = {
        a.path for folder in ("samples", "model", "config") for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {"samples/fused_epoch_001.png", "model/model.pt"} <= artifacts
    assert any(path.startswith("config/config_") for path in artifacts)


def test_a_site_with_its_own_mri_pet_folders_trains_with_a_fraction_held_out(tmp_path):
    site = tmp_path / "site"
    samples = sorted((ROOT / "data" / "samples" / "mri_pet" / "MRI").iterdir())
    for subject, sample in enumerate(samples * 2, start=1):  # four subjects, named the way a site exports them
        for source, folder in (("MRI", "T1"), ("PET", "FDG")):
            (site / "brain_pet" / folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(
                sample.parents[1] / source / sample.name, site / "brain_pet" / folder / f"sub{subject:02d}.png"
            )
    own_data = (
        "--dataset_dir",
        str(site),
        "--pair_types",
        "{'brain_pet': ['T1', 'FDG']}",
        "--validation_fraction",
        "0.25",
    )
    result = _train(tmp_path / "ckpt", 1, data=own_data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{site}: 3 training and 1 validation pairs (brain_pet)" in result.stdout + result.stderr
    assert (tmp_path / "ckpt" / "model.pt").is_file()


def test_a_wrong_layout_ends_training_with_one_line_before_any_work(tmp_path):
    shutil.copytree(ROOT / "data" / "samples" / "mri_pet" / "MRI", tmp_path / "site" / "mri_pet" / "MRI")
    result = _train(tmp_path / "ckpt", 1, data=("--dataset_dir", str(tmp_path / "site")))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'site' / 'mri_pet' / 'PET'}: missing modality folder; expected one folder per pair type,"
        " each with one folder per modality holding the same file names (mri_pet/MRI + mri_pet/PET)"
    )
    assert not (tmp_path / "ckpt").exists()  # nothing was built or written


def _bundle_files() -> dict[str, str]:
    return {
        path.relative_to(BUNDLE).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(BUNDLE.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_training_by_default_writes_under_outputs_and_never_into_the_bundle(tmp_path):
    before = _bundle_files()
    result = _train(None, 1, "--tracking", "mlflow", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "outputs" / "mmif_net" / "training"
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "checkpoint_epoch=1.pt").is_file()
    assert (out / "mlruns.db").is_file()
    assert _bundle_files() == before  # the shipped weights and everything beside them untouched


def test_training_into_the_shipped_weights_folder_is_refused_before_any_work(tmp_path):
    before = _bundle_files()
    result = _train(BUNDLE / "models", 1, "--tracking", "mlflow", "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: ckpt_dir {BUNDLE / 'models'} holds the bundle's shipped weights: training would replace its model.pt."
        " Train into another folder (--output_dir DIR, or --ckpt_dir DIR), or add --replace_shipped_weights True to"
        " replace them on purpose"
    )
    assert _bundle_files() == before
    assert not (tmp_path / "out").exists()  # not even the executed config MONAI's tracking writes first


def test_a_run_refused_in_initialize_writes_nothing(tmp_path):
    """An empty validation split stops the run in initialize; MONAI's tracking has written the executed config into
    the default output folder by then, and the refused run removes it and the folders made for it."""
    empty_split = (*SAMPLE_DATA[:2], "--validation_cases", "[99]")
    result = _train(None, 1, "--tracking", "mlflow", data=empty_split, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the validation split is empty" in result.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def _unreadable_data_set(folder: Path) -> Path:
    """The sample data set's layout with every image replaced by bytes no reader decodes: a run that loaded any
    image would fail on it, so a run that ends with another error ended before loading data."""
    for image in (ROOT / "data" / "samples").rglob("*.png"):
        target = folder / image.relative_to(ROOT / "data" / "samples")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"not an image")
    return folder


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "another configuration"])
def test_a_checkpoint_that_cannot_be_resumed_ends_training_in_one_line_before_any_data_load(tmp_path, damage):
    """Issue #34, item 8: resuming from a truncated or random-bytes checkpoint ended in an 85-line traceback, from
    one of another configuration in a 139-line block of missing and unexpected keys raised after the data loaded.
    Each is one line naming the file and what to do, before any image is read (the data set here holds none that
    reads) and with nothing left in output_dir (MONAI's tracking wrote its executed config there first)."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    newest = ckpt / "checkpoint_epoch=1.pt"
    if damage == "truncated":  # a whole checkpoint before it: the message says the run would resume from that one
        torch.save({"model": MMIFNet().state_dict(), "trainer": {"epoch": 1}}, newest)
        newest = ckpt / "checkpoint_epoch=2.pt"
        whole = newest.with_suffix(".whole")
        torch.save({"model": MMIFNet().state_dict(), "trainer": {"epoch": 2}}, whole)
        newest.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        whole.unlink()
    elif damage == "random bytes":
        newest.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save({"model": MMIFNet(msl=False, sa=False).state_dict(), "trainer": {"epoch": 1}}, newest)
    data = ("--dataset_dir", str(_unreadable_data_set(tmp_path / "site")), "--validation_cases", "[37]")
    out = tmp_path / "out"
    result = _train(ckpt, 1, "--tracking", "mlflow", "--output_dir", str(out), data=data)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    expected = {
        "truncated": (
            f"error: {newest}: not a PyTorch weights file (neither torch.save's zip format nor a pickle); training"
            " resumes from the newest checkpoint in ckpt_dir: delete it to resume from checkpoint_epoch=1.pt, or"
            " train into a new --ckpt_dir"
        ),
        "random bytes": (
            f"error: {newest}: not a PyTorch weights file (neither torch.save's zip format nor a pickle); training"
            " resumes from the newest checkpoint in ckpt_dir: delete it to start afresh, or train into a new"
            " --ckpt_dir"
        ),
    }
    if damage in expected:
        assert last == expected[damage]
    else:
        assert last.startswith(f"error: {newest}: not weights of this MMIF-Net configuration: missing stem.2.")
        assert last.endswith("; resume with the configuration that wrote it, or train into a new --ckpt_dir")
    assert not out.exists()


def test_mlflow_tracking_into_a_read_only_output_dir_ends_in_one_line(tmp_path):
    """Issue #34, item 8: MONAI's tracking writes the executed config into output_dir while it builds the workflow,
    before any of the bundle's code runs; into a read-only folder that was a 30-line traceback. The configs import
    mmif_monai.engines.monai_errors, which prints that error as one line naming the file; exit status 1."""
    from read_only import read_only_folder

    with read_only_folder(tmp_path / "ro") as ro:
        result = _train(tmp_path / "ckpt", 1, "--tracking", "mlflow", "--output_dir", str(ro))
        assert not list(ro.iterdir())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"error: cannot write {re.escape(str(ro))}/config_\d{{8}}_\d{{6}}\.json: (Permission denied|Operation not"
        r" permitted|Read-only file system); --tracking writes the executed config and the MLflow store into"
        r" output_dir: give --output_dir a folder you can write",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr[-2000:]
    assert not (tmp_path / "ckpt").exists()


def test_training_never_writes_into_its_data_set(tmp_path):
    """Outputs never land in inputs (issue #34, item 6): an output_dir or ckpt_dir inside dataset_dir is refused in
    one line before any work, and the data set is left as it was (MONAI's executed config removed again)."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "data" / "samples", site)
    before = {p: p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}
    result = _train(
        site / "models",
        1,
        "--tracking",
        "mlflow",
        "--output_dir",
        str(site),
        data=(*SAMPLE_DATA[:1], str(site), *SAMPLE_DATA[2:]),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {site}: writing into this folder would modify the input {site}; inputs are never modified"
    )
    assert {p: p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()} == before
    assert not (site / "models").exists()
