"""The MONAI Deploy app, run as users run it, on a phantom PET/CT DICOM study; and its series selection.

Skipped only where the ``[deploy]`` extra (MONAI Deploy App SDK) is not installed; a broken install (e.g. the
SDK without highdicom, which breaks ``import monai``) fails instead of skipping.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

pytest.importorskip("monai.deploy.core", reason="needs the [deploy] extra", exc_type=ModuleNotFoundError)

from dicom_checks import dciodvfy  # noqa: E402
from mmif_monai.deploy.selection import (  # noqa: E402
    ANATOMICAL,
    FUNCTIONAL,
    check_single_study,
    choose_pair,
    load_rules,
)
from mmif_monai.phantoms import write_phantom_dicom_study  # noqa: E402

# runs the Deploy app in subprocesses: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

# a small study keeps the run short: CT 64 x 64 x 12 voxels,
# PET 32 x 32 x 8 on another grid (the phantom halves the grid, at least 8 voxels per axis)
SHAPE = (64, 64, 12)


def _run_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmif_monai.deploy.app", *args], capture_output=True, text=True, timeout=600
    )


def _series_uid(folder: Path) -> str:
    return pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_phantom_dicom_study(tmp_path_factory.mktemp("study"), shape=SHAPE)


def test_fuses_the_phantom_study_into_a_new_series_of_the_same_patient_and_study(study, tmp_path):
    out = tmp_path / "out"
    result = _run_app("-i", str(study.ct_dir.parent), "-o", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "anatomical: CT" in result.stdout and "functional: PT" in result.stdout, result.stdout

    files = sorted((out / "fused").iterdir())
    fused = [pydicom.dcmread(path) for path in files]
    ct = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(study.ct_dir.iterdir())]
    # one fused image per anatomical slice, on the anatomical grid
    assert len(fused) == len(ct)
    position = lambda ds: tuple(round(float(v), 2) for v in ds.ImagePositionPatient)  # noqa: E731
    assert {position(ds) for ds in fused} == {position(ds) for ds in ct}
    assert {(ds.Rows, ds.Columns) for ds in fused} == {(ct[0].Rows, ct[0].Columns)}
    # same patient and study, a new series marked as derived
    sources = {_series_uid(study.ct_dir), _series_uid(study.pt_dir)}
    assert {ds.PatientID for ds in fused} == {study.patient_id}
    assert {ds.StudyInstanceUID for ds in fused} == {study.study_instance_uid}
    assert {ds.FrameOfReferenceUID for ds in fused} == {study.frame_of_reference_uid}
    series_uids = {ds.SeriesInstanceUID for ds in fused}
    assert len(series_uids) == 1 and not series_uids & sources
    assert all("DERIVED" in ds.ImageType for ds in fused)
    assert len({ds.SOPInstanceUID for ds in fused}) == len(fused)
    # each image references the CT image on its plane and PET images of the study (tests/test_dicom_series.py
    # checks which); the Secondary Capture IOD holds: dciodvfy reports no error
    pet = [pydicom.dcmread(path, stop_before_pixels=True) for path in study.pt_dir.iterdir()]
    inputs = {ds.SOPInstanceUID: ds for ds in ct + pet}
    for ds, path in zip(fused, files):
        referenced = [inputs[item.ReferencedSOPInstanceUID] for item in ds.SourceImageSequence]
        assert [source.Modality for source in referenced].count("CT") == 1
        assert {source.SeriesInstanceUID for source in referenced} == sources
        assert {series.SeriesInstanceUID for series in ds.ReferencedSeriesSequence} == sources
        assert "Error" not in dciodvfy(path)
    # real images: the head shows, not a constant
    assert max(int(ds.pixel_array.max()) for ds in fused) > min(int(ds.pixel_array.min()) for ds in fused)


@pytest.fixture
def study_of_two_patients(tmp_path):
    # a study folder beside the test's output folder, not around it: an output inside the input is refused first
    write_phantom_dicom_study(tmp_path / "study" / "a", shape=(16, 16, 16), patient_id="PHANTOM-001")
    write_phantom_dicom_study(tmp_path / "study" / "b", shape=(16, 16, 16), patient_id="PHANTOM-002")
    return tmp_path / "study"


@pytest.fixture
def study_of_two_patients_under_one_id(tmp_path):
    """One PatientID on both series, but the PET is of another PatientName and birth date: two patients."""
    phantom = write_phantom_dicom_study(tmp_path / "study", shape=(16, 16, 16), patient_id="PHANTOM-001")
    for path in phantom.pt_dir.iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = "Quorvath^Elsbet", "19520817"
        ds.save_as(path)
    return tmp_path / "study"


@pytest.fixture
def study_without_functional_series(tmp_path):
    phantom = write_phantom_dicom_study(tmp_path / "study", shape=(16, 16, 16))
    shutil.rmtree(phantom.pt_dir)
    return tmp_path / "study"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("study_of_two_patients", ["2 patients", "patient 1: CT 'CT HEAD PHANTOM'", "patient 2: CT"]),
        ("study_without_functional_series", ["no functional series", "CT 'CT HEAD PHANTOM'"]),
        ("study_of_two_patients_under_one_id", ["/PT: its PatientName differs from that of", "two patients"]),
    ],
)
def test_bad_study_is_a_one_line_error_naming_the_folder_and_nothing_is_written(request, tmp_path, case, expected):
    folder = request.getfixturevalue(case)
    out = tmp_path / "out"
    result = _run_app("-i", str(folder), "-o", str(out))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmif-deploy: error:"), result.stderr[-3000:]
    assert str(folder) in lines[0] and all(text in lines[0] for text in expected), lines[0]
    printed = result.stderr + result.stdout  # series are named, patients' identifiers never
    assert not [token for token in ("PHANTOM-00", "Quorvath", "Elsbet", "19520817", "Phantom^") if token in printed]
    assert not out.exists()


def _series(uid: str, modality: str, number: int) -> SimpleNamespace:
    return SimpleNamespace(
        SeriesInstanceUID=uid,
        Modality=modality,
        SeriesDescription="",
        SeriesNumber=number,
        get_sop_instances=lambda: [],
    )


def test_two_mr_series_pair_up_and_one_mr_alone_is_refused():
    rules = load_rules()
    first, second = _series("1.1", "MR", 1), _series("1.2", "MR", 2)
    # both MR series match the anatomical and the functional MR selections: the functional one is the other one
    both = [first, second]
    assert choose_pair({ANATOMICAL: both, FUNCTIONAL: both}, None, "study", rules) == (first, second)
    study = SimpleNamespace(get_all_series=lambda: [first])
    with pytest.raises(ValueError, match="no functional series other than the anatomical one"):
        choose_pair({ANATOMICAL: [first], FUNCTIONAL: [first]}, study, "study", rules)


def test_two_studies_of_one_patient_are_refused_with_their_uids():
    instance = SimpleNamespace(get_native_sop_instance=lambda: {"PatientID": "PHANTOM-001"})
    series = SimpleNamespace(SeriesInstanceUID="1.1", get_sop_instances=lambda: [instance])
    studies = [SimpleNamespace(StudyInstanceUID=uid, get_all_series=lambda: [series]) for uid in ("2.1", "2.2")]
    with pytest.raises(ValueError, match=r"^study: holds 2 studies \(2.1, 2.2\)"):
        check_single_study(studies, "study")
    assert check_single_study(studies[:1], "study") is studies[0]


def test_rules_must_name_both_roles(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"selections": [{"name": "anatomical", "conditions": {"Modality": "CT"}}]}))
    with pytest.raises(ValueError, match="rules.json: no selection named 'functional'"):
        load_rules(rules)
    rules.write_text(json.dumps({"selections": [{"name": "pet", "conditions": {"Modality": "PT"}}]}))
    with pytest.raises(ValueError, match="named 'pet'"):
        load_rules(rules)


def test_map_requirements_pin_what_pyproject_pins():
    from packaging.requirements import Requirement

    from mmif_monai.io.paths import REPO_ROOT

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        Requirement(line).name.lower(): Requirement(line).specifier
        for line in project["dependencies"] + project["optional-dependencies"]["deploy"]
    }
    lines = [line.strip() for line in (REPO_ROOT / "mmif_monai/deploy/requirements.txt").read_text().splitlines()]
    for line in (line for line in lines if line and not line.startswith("#")):
        requirement = Requirement(line)
        assert requirement.name.lower() in pinned, f"{line}: not a dependency in pyproject.toml"
        expected = pinned[requirement.name.lower()]
        assert requirement.specifier == expected, f"{line}: pyproject.toml pins {expected}"


def test_monai_imported_through_mmif_monai_leaves_the_deploy_sdk_unloaded_until_asked_for():
    # MONAI's __init__ imports every subpackage of its namespace, the installed SDK's monai.deploy included
    probe = (
        "import sys, mmif_monai, monai, monai.networks;"
        "print('holoscan' in sys.modules, 'monai.deploy' in sys.modules);"
        "import mmif_monai.deploy.operators;"
        "print('holoscan' in sys.modules, sys.modules['monai.deploy'].__path__ != [])"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "False", "True", "True"]


@pytest.mark.parametrize("output", [".", "out"])
def test_the_fused_series_never_lands_in_the_input_study(study, tmp_path, output):
    """Outputs never land in inputs (issue #34, item 6): `-o` inside the input study wrote the fused series into
    the study (its next reading would find a third series). Refused in one line, even with --overwrite, and the
    study is left as it was, no output folder made in it."""
    folder = tmp_path / "study"
    shutil.copytree(study.ct_dir.parent, folder)
    before = {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    out = folder / output if output != "." else folder
    result = _run_app("-i", str(folder), "-o", str(out), "--method", "average", "--overwrite")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"mmif-deploy: error: {out / 'fused'}: writing this output would modify the input {folder}; inputs are never"
        " modified"
    ], result.stderr[-3000:]
    assert {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in study.ct_dir.parent.iterdir())
