"""The `mmif` command end to end on the shipped sample pairs."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli_runs import fuse_pair
from mmif_monai.cli.main import main
from mmif_monai.io.paths import SAMPLES_DIR

PET = SAMPLES_DIR / "mri_pet"
CT = SAMPLES_DIR / "mri_ct"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmif_monai.cli.main", *args], capture_output=True, text=True)


def test_fuse_mri_pet_gives_a_colour_image_and_names_the_model(tmp_path, capsys):
    out = tmp_path / "fused.png"
    assert fuse_pair(str(PET / "MRI/30061.png"), str(PET / "PET/30061.png"), str(out)) == 0
    assert "model: MMIF-Net" in capsys.readouterr().out
    fused = Image.open(out)
    assert fused.mode == "RGB" and fused.size == (256, 256)
    pet = np.asarray(Image.open(PET / "PET/30061.png").convert("RGB"), dtype=float)
    # colour comes from the PET: where the PET is strongly coloured the fused image is coloured too
    chroma = lambda a: a.max(axis=-1) - a.min(axis=-1)  # noqa: E731
    coloured = chroma(pet) > 100
    assert chroma(np.asarray(fused, dtype=float))[coloured].mean() > 40


def test_fuse_mri_ct_gives_a_grey_image(tmp_path):
    out = tmp_path / "fused.png"
    assert fuse_pair(str(CT / "MRI/37010.png"), str(CT / "CT/37010.png"), str(out)) == 0
    assert Image.open(out).mode == "L"


@pytest.mark.parametrize("method", ["average", "max"])
def test_classical_methods_through_the_cli(tmp_path, method):
    out = tmp_path / "fused.png"
    assert fuse_pair(str(CT / "MRI/37010.png"), str(CT / "CT/37010.png"), str(out), "--method", method) == 0
    a = np.asarray(Image.open(CT / "MRI/37010.png"), dtype=float)
    b = np.asarray(Image.open(CT / "CT/37010.png"), dtype=float)
    expected = (a + b) / 2 if method == "average" else np.maximum(a, b)
    assert np.abs(np.asarray(Image.open(out), dtype=float) - expected).max() <= 1.0


def test_pairs_mode_keeps_names_and_ends_with_a_summary_line(tmp_path, capsys):
    assert (
        main(
            ["fuse", "--method", "average", "--pairs", str(PET / "MRI"), str(PET / "PET"), "-o", str(tmp_path / "out")]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["30061.png", "30075.png"]
    # captured output is not a terminal: no progress bar, but the summary is still the last line
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"fused 2 pairs in [0-9.]+ s \([0-9.]+ pairs/s\)", last_line), last_line


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "fused.png"
    out.write_bytes(b"keep me")
    args = [
        "fuse",
        "--method",
        "average",
        "--anatomical",
        str(CT / "MRI/37010.png"),
        "--functional",
        str(CT / "CT/37010.png"),
        "-o",
        str(out),
    ]
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == 0
    assert Image.open(out).size == (256, 256)


def test_debug_shows_the_traceback(tmp_path):
    result = _run(
        "--debug",
        "fuse",
        "--anatomical",
        str(tmp_path / "missing.png"),
        "--functional",
        str(CT / "CT/37010.png"),
        "-o",
        str(tmp_path / "f.png"),
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_demo_fuses_every_sample_and_writes_a_preview(tmp_path):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    fused = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert "preview.png" in fused
    assert len(fused) == 1 + 6
    assert Image.open(tmp_path / "mri_spect" / "10020.png").mode == "RGB"
    with Image.open(tmp_path / "preview.png") as preview:  # a 256-colour palette figure, the fused images as RGB
        assert preview.mode == "P" and len(preview.getcolors(256) or []) > 16


def test_evaluate_scores_method_folders_side_by_side(tmp_path, capsys):
    for method in ("average", "max"):
        assert (
            main(["fuse", "--method", method, "--pairs", str(CT / "MRI"), str(CT / "CT"), "-o", str(tmp_path / method)])
            == 0
        )
    out = tmp_path / "report"
    args = [
        "evaluate",
        "--fused",
        str(tmp_path / "average"),
        str(tmp_path / "max"),
        "--a",
        str(CT / "MRI"),
        "--b",
        str(CT / "CT"),
        "-o",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| average |" in printed and "| max |" in printed and "SSIM protocol" in printed
    assert {p.name for p in out.iterdir()} >= {"metrics.csv", "metrics.md", "metrics.png"}
    csv_rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + 2 * 2  # header + 2 methods x 2 images
    assert main(args) == 1  # outputs exist: refused without --overwrite
    assert main([*args, "--overwrite"]) == 0


def test_evaluate_records_an_mlflow_run_of_the_study(tmp_path, capsys):
    mlflow = pytest.importorskip("mlflow")
    for method in ("average", "max"):
        assert (
            main(["fuse", "--method", method, "--pairs", str(CT / "MRI"), str(CT / "CT"), "-o", str(tmp_path / method)])
            == 0
        )
    out = tmp_path / "study"
    args = [
        "evaluate", "--fused", str(tmp_path / "average"), str(tmp_path / "max"),
        "--a", str(CT / "MRI"), "--b", str(CT / "CT"), "-o", str(out), "--tracking", "mlflow",
        "--tag", "site=phantom-hospital", "--tag", "reader=R1", "--run-name", "week 1",
        "--reference", "average",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "MLflow run" in printed and "| max − average |" in printed
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("mmif-evaluation")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "week 1"
    assert run.data.params == {
        "methods": "average, max",
        "protocol": "project",
        "ssim_protocol": "literature",
        "images": "2",
        "reference": "average",
    }
    assert run.data.tags["site"] == "phantom-hospital" and run.data.tags["reader"] == "R1"
    # the logged means are those of the per-image CSV, for every method and metric
    header, *rows = [line.split(",") for line in (out / "metrics.csv").read_text().strip().splitlines()]
    for method in ("average", "max"):
        vif = [float(row[header.index("VIF")]) for row in rows if row[header.index("method")] == method]
        assert run.data.metrics[f"{method}/VIF"] == pytest.approx(np.mean(vif), rel=1e-6)
        assert run.data.metrics[f"{method}/VIF_std"] == pytest.approx(np.std(vif), rel=1e-6, abs=1e-12)
    assert len([k for k in run.data.metrics if not k.endswith("_std")]) == 2 * 11
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"metrics.csv", "metrics.md", "metrics.png", "paired.md"}
    # the artifacts live next to the database, not in the working directory
    assert (out / "mlruns").is_dir()
    # a second evaluation into the same folder adds a run to the study's store
    assert main([*args, "--overwrite"]) == 0
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_evaluate_refuses_bad_tags_and_references_before_scoring(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["evaluate", "--fused", str(CT / "CT"), "--a", str(CT / "MRI"), "--b", str(CT / "CT"), "-o", str(out)]
    assert main([*args, "--tracking", "mlflow", "--tag", "site"]) == 1
    assert "--tag needs KEY=VALUE" in capsys.readouterr().err
    assert main([*args, "--tag", "site=A"]) == 1
    assert "add --tracking mlflow" in capsys.readouterr().err
    assert main([*args, "--reference", "max"]) == 1
    assert "the reference 'max' needs to be one of several methods" in capsys.readouterr().err
    assert not out.exists()


def _tree(root):
    """Every file under ``root`` with its bytes and modification time: what "untouched" means."""
    return {p.relative_to(root): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("into", ["A", "B/report", "average"])
def test_evaluate_never_writes_into_its_source_or_fused_folders(tmp_path, capsys, into):
    """Outputs never land in inputs (issue #34, item 6): `-o A --overwrite` wrote metrics.csv/.md/.png into the
    source folder A (the next scoring then found metrics.png there as an image without a partner); into a fused
    folder likewise. Refused in one line, even with --overwrite, and nothing in the folders changes."""
    for name in ("MRI", "CT"):
        (tmp_path / {"MRI": "A", "CT": "B"}[name]).mkdir()
        for image in (CT / name).iterdir():
            (tmp_path / {"MRI": "A", "CT": "B"}[name] / image.name).write_bytes(image.read_bytes())
    assert (
        main(
            [
                "fuse",
                "--method",
                "average",
                "--pairs",
                *(str(tmp_path / x) for x in "AB"),
                "-o",
                str(tmp_path / "average"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    before = _tree(tmp_path)
    args = ["evaluate", "--fused", str(tmp_path / "average"), "--a", str(tmp_path / "A"), "--b", str(tmp_path / "B")]
    assert main([*args, "-o", str(tmp_path / into), "--overwrite"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    source = tmp_path / into.split("/")[0]
    assert line == (
        f"mmif: error: {tmp_path / into / 'metrics.csv'}: writing this output would modify the input {source};"
        " inputs are never modified"
    )
    assert _tree(tmp_path) == before and not (tmp_path / "B" / "report").exists()


@pytest.mark.parametrize("store", ["sqlite", "folder"])
def test_evaluate_checks_that_the_mlflow_store_is_writable_before_scoring(tmp_path, capsys, monkeypatch, store):
    """`mmif evaluate --tracking mlflow` into a read-only store (issue #34, item 9) scored everything, then retried
    MLflow for about two minutes and printed a sqlalchemy traceback. The store is checked before scoring: one line
    naming it, nothing scored (scoring would fail this test) and nothing written."""
    from read_only import read_only_folder

    def scored(*args, **kwargs):
        raise AssertionError("scored before the store was checked")

    monkeypatch.setattr("mmif_monai.metrics.report.evaluate_folders", scored)
    out = tmp_path / "study"
    with read_only_folder(tmp_path / "ro") as ro:
        uri = f"sqlite:///{ro / 'mlruns.db'}" if store == "sqlite" else str(ro / "mlruns")
        args = [
            "evaluate", "--fused", str(CT / "CT"), "--a", str(CT / "MRI"), "--b", str(CT / "CT"), "-o", str(out),
            "--tracking", "mlflow", "--tracking-uri", uri,
        ]  # fmt: skip
        assert main(args) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    target = ro / "mlruns.db" if store == "sqlite" else ro / "mlruns"
    assert line == (
        f"mmif: error: MLflow store {uri}: cannot write {target}: the folder {ro} is not writable; nothing was scored:"
        " give --tracking-uri a store you can write"
    )
    assert not out.exists() and not list(ro.iterdir())


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--batch-size", "0", "argument --batch-size: must be at least 1, got 0"),
        ("--batch-size", "-3", "argument --batch-size: must be at least 1, got -3"),
        ("--batch-size", "two", "argument --batch-size: expected a whole number, got 'two'"),
    ],
)
def test_numeric_options_are_checked_by_the_parser(tmp_path, capsys, option, value, expected):
    args = ["fuse", "--anatomical", str(CT / "MRI/37010.png"), "--functional", str(CT / "CT/37010.png")]
    with pytest.raises(SystemExit) as stop:
        main([*args, "-o", str(tmp_path / "fused.png"), option, value])
    assert stop.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].endswith(expected)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "option, name", [("-o", "-o/--output"), ("--anatomical", "--anatomical"), ("--functional", "--functional")]
)
def test_an_empty_path_is_said_to_be_empty(tmp_path, capsys, monkeypatch, option, name):
    """An empty argument was read as ".", the current folder: `-o ''` was reported as "." (and an empty input
    taken for a DICOM folder). The parser names the option and says the path is empty; nothing is written."""
    monkeypatch.chdir(tmp_path)
    paths = {"--anatomical": str(CT / "MRI/37010.png"), "--functional": str(CT / "CT/37010.png"), "-o": "fused.png"}
    paths[option] = ""
    with pytest.raises(SystemExit) as stop:
        main(["fuse", "--method", "average", *[word for pair in paths.items() for word in pair]])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"argument {name}: the path is empty")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "option, value, expected",
    [("--learning-rate", "0", "must be a positive finite number"), ("--epochs", "0", "must be at least 1"),
     ("--timing-repeats", "-1", "must be at least 1"), ("--validation-cases", "-2", "must be at least 0")],
)  # fmt: skip
def test_compare_budget_options_are_checked_by_the_parser(capsys, option, value, expected):
    with pytest.raises(SystemExit) as stop:
        main(["compare", option, value])
    assert stop.value.code == 2 and f"argument {option}: {expected}" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_a_users_error_is_one_line(monkeypatch, capsys):
    """RuntimeError (torch's out of memory, a shape mismatch) is not the user's to read as one line."""
    from mmif_monai.cli import main as cli
    from mmif_monai.errors import MMIFError

    def out_of_memory(args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setitem(cli.COMMANDS, "demo", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["demo"])

    def failed_training(args):
        raise MMIFError("training into ck failed (exit code 1); see ck/train.log\nmore detail")

    monkeypatch.setitem(cli.COMMANDS, "demo", failed_training)
    assert main(["demo"]) == 1
    assert capsys.readouterr().err == "mmif: error: training into ck failed (exit code 1); see ck/train.log\n"


def test_help_lists_the_fusion_methods_the_library_offers(capsys):
    from mmif_monai.fusion.methods import available_methods
    from mmif_monai.io.preflight import FUSION_METHOD_NAMES

    assert list(FUSION_METHOD_NAMES) == available_methods()  # the command line's copy of the names is current
    with pytest.raises(SystemExit):
        main(["fuse", "--help"])
    assert "{" + ",".join(FUSION_METHOD_NAMES) + "}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["fuse", "--anatomical", "a.png", "--functional", "b.png", "-o", "c.png", "--method", "max-autoencoded"])
    assert "invalid choice: 'max-autoencoded'" in capsys.readouterr().err  # the diagnostic is no user method


def test_compare_without_a_data_set_says_how_to_give_one(monkeypatch, tmp_path, capsys):
    # as in a wheel install, where no ../shared/data/aanlib lies beside the code
    monkeypatch.setattr("mmif_monai.io.paths.DEFAULT_DATASET_DIR", tmp_path / "nowhere")
    assert main(["compare", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    default = tmp_path / "nowhere"
    assert err == f"mmif: error: no data set at the default {default}: give --dataset-dir DIR or set MMIF_DATASET_DIR"
    assert not (tmp_path / "out").exists()


def test_the_default_data_set_comes_from_mmif_dataset_dir_when_set(tmp_path):
    probe = "from mmif_monai.io.paths import DEFAULT_DATASET_DIR; print(DEFAULT_DATASET_DIR)"
    env = {**os.environ, "MMIF_DATASET_DIR": str(tmp_path)}
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert found.stdout.strip().splitlines()[-1] == str(tmp_path)


def test_debug_after_the_command_shows_the_traceback_too(tmp_path, capsys):
    args = ["fuse", "--anatomical", str(tmp_path / "missing.png"), "--functional", str(CT / "CT/37010.png")]
    args += ["-o", str(tmp_path / "f.png")]
    assert main(args) == 1 and capsys.readouterr().err.startswith("mmif: error:")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        main([*args, "--debug"])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        main(["--debug", *args])


def test_the_command_lines_copies_of_method_names_are_current():
    from mmif_monai.io.preflight import COMPARISON_METHOD_NAMES
    from mmif_monai.studies import COMPARISON_METHODS

    assert list(COMPARISON_METHOD_NAMES) == list(COMPARISON_METHODS)


def test_mistakes_of_every_command_fail_before_torch_and_monai_are_imported(tmp_path):
    """Arguments and paths are checked with the standard library: start-up takes seconds, these fail in a fraction
    of one (the fuse command's own cases: tests/test_reliability.py)."""
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "metrics.csv").write_text("an earlier evaluation")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "preview.png").write_bytes(b"an earlier preview")
    (tmp_path / "phantom").mkdir()
    (tmp_path / "phantom" / "ct.nii.gz").write_bytes(b"an earlier phantom")
    evaluate = ["evaluate", "--a", str(CT / "MRI"), "--b", str(CT / "CT")]
    mistakes = {
        "folder not found": [*evaluate, "--fused", str(tmp_path / "nowhere"), "-o", str(tmp_path / "e")],
        "does not match": [*evaluate, "--fused", str(PET / "PET"), "-o", str(tmp_path / "e")],
        "metrics.csv: output exists": [*evaluate, "--fused", str(CT / "CT"), "-o", str(tmp_path / "taken")],
        "the reference 'max' needs": [*evaluate, "--fused", str(CT / "CT"), "--reference", "max"],
        "scores SSIM by the literature": [
            *evaluate, "--fused", str(CT / "CT"), "--protocol", "published", "--ssim-protocol", "correct"
        ],
        "no pair-type folders": ["demo", "--samples", str(tmp_path / "nowhere"), "-o", str(tmp_path / "d")],
        "preview.png: output exists": ["demo", "-o", str(tmp_path / "demo")],
        "weights file not found": ["demo", "-o", str(tmp_path / "d"), "--weights", str(tmp_path / "w.pt")],
        "unknown method 'densfuse'": ["compare", "--weights", "densfuse=w.pt"],
        "w.pt: --released file for ifcnn not found": [
            "compare", "--released", f"ifcnn={tmp_path / 'w.pt'}", "--dataset-dir", str(SAMPLES_DIR)
        ],
        "data set folder not found": ["compare", "--dataset-dir", str(tmp_path / "nowhere")],
        "ct.nii.gz: exists": ["phantom", "-o", str(tmp_path / "phantom")],
    }  # fmt: skip
    probe = (
        "import json, sys\n"
        "from mmif_monai.cli.main import main\n"
        "codes = [main(args) for args in json.loads(sys.argv[1])]\n"
        "print(json.dumps({'codes': codes, 'loaded': [m for m in ('torch', 'monai') if m in sys.modules]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(list(mistakes.values()))], capture_output=True, text=True, timeout=120
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"codes": [1] * len(mistakes), "loaded": []}, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(mistakes), result.stderr
    for expected, error in zip(mistakes, errors):
        assert error.startswith("mmif: error:") and expected in error, (expected, error)
    assert not (tmp_path / "e").exists() and not (tmp_path / "d").exists()


def test_phantom_writes_a_dicom_study_that_mmif_fuse_reads_as_one_folder(tmp_path, capsys):
    study = tmp_path / "study"
    assert main(["phantom", "--format", "dicom", "-o", str(study), "--shape", "16", "16", "16"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in study.iterdir()) == ["CT", "PT"] and len(list((study / "CT").iterdir())) == 16
    assert f"mmif fuse --anatomical {study} --functional {study} --format dicom" in printed
    out = tmp_path / "fused"
    assert main(["fuse", "--anatomical", str(study), "--functional", str(study), "--format", "dicom", "-o", str(out),
                 "--method", "average"]) == 0  # fmt: skip
    assert len(list(out.iterdir())) == 16
    assert main(["phantom", "-o", str(tmp_path / "nifti"), "--shape", "16", "16", "16"]) == 0
    assert sorted(p.name for p in (tmp_path / "nifti").iterdir()) == ["ct.nii.gz", "pet.nii.gz"]
