"""Patient identity in DICOM headers (name, ID, birth date, accession number) never reaches logs, printed
output, non-DICOM outputs, or the MLflow store (its database and artifacts).

Every identifier is a rare token, searched for in raw bytes, in each of the spellings it could be rewritten to
(``Zyxwort^Quilla`` -> ``Zyxwort``, ``Quilla``; ``19610203`` -> ``1961-02-03``), so that a reformatted leak is
found too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from mmif_monai.cli.main import main
from mmif_monai.io.aanlib import PAIR_TYPES
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.phantoms import write_phantom_dicom_study

# trains and fuses identified DICOM studies: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "mmif_net"

PATIENT = {
    "PatientName": "Zyxwort^Quilla",
    "PatientID": "PRIV-98765",
    "PatientBirthDate": "19610203",
    "AccessionNumber": "ACC-445566",
}
FORBIDDEN = ("Zyxwort", "Quilla", "PRIV-98765", "98765", "19610203", "1961-02-03", "ACC-445566", "445566")
MODALITY_OF_FOLDER = {"MRI": "MR", "CT": "CT", "PET": "PT", "SPECT": "NM"}


def _leaks(blobs: dict[str, bytes]) -> list[str]:
    return [f"{token!r} in {where}" for where, blob in blobs.items() for token in FORBIDDEN if token.encode() in blob]


def _files(*folders: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for folder in folders for path in folder.rglob("*") if path.is_file()}


def _write_dicom_slice(path: Path, grey: np.ndarray, modality: str) -> None:
    """A 16-bit DICOM slice of ``grey`` carrying the test patient's identity."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = modality, generate_uid(), generate_uid()
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (grey.astype(np.uint16) * 16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_fusing_a_dicom_study_logs_and_writes_no_identity_outside_the_dicom_series(tmp_path, capfd, caplog):
    study = write_phantom_dicom_study(
        tmp_path / "study", shape=(24, 24, 16), patient_id=PATIENT["PatientID"], patient_name=PATIENT["PatientName"]
    )
    # the phantom's other identity attributes, set to the test's tokens too
    for path in [*study.ct_dir.iterdir(), *study.pt_dir.iterdir()]:
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate, ds.AccessionNumber = PATIENT["PatientBirthDate"], PATIENT["AccessionNumber"]
        ds.save_as(path)
    assert _leaks(_files(study.ct_dir))  # the inputs do carry the identity: the scan can find it

    caplog.set_level(logging.DEBUG)  # every log record of every library, whatever the CLI's own set-up
    nifti = tmp_path / "nifti" / "fused.nii.gz"
    args = ["--anatomical", str(study.ct_dir), "--functional", str(study.pt_dir), "--method", "average"]
    assert main(["--debug", "fuse", *args, "-o", str(nifti)]) == 0  # --debug: the most the logs ever say
    dicom = tmp_path / "dicom" / "fused"
    assert main(["fuse", *args, "--format", "dicom", "-o", str(dicom)]) == 0
    printed = capfd.readouterr()
    assert "wrote" in printed.out
    assert caplog.records  # the libraries did log
    blobs = {
        "stdout": printed.out.encode(),
        "stderr": printed.err.encode(),
        "log": caplog.text.encode(),
        **_files(tmp_path / "nifti"),
    }
    blobs.update({path: data for path, data in _files(tmp_path / "dicom").items() if path.endswith(".png")})
    assert not _leaks(blobs)
    # the fused DICOM series belongs to the patient's record: it keeps the identity (DICOM derived-image rules)
    fused_series = [p for p in dicom.iterdir() if p.is_file()]
    assert fused_series and pydicom.dcmread(fused_series[0]).PatientID == PATIENT["PatientID"]


def _dicom_dataset(root: Path) -> Path:
    """The shipped sample slices as an AANLIB-layout dataset of identified 16-bit DICOM files (64x64 centre crops),
    one training case (30) and one validation case (37) per pair type."""
    for pair_type, folders in PAIR_TYPES.items():
        sources = sorted((SAMPLES_DIR / pair_type / folders[0]).iterdir())
        for case, source in zip((30, 37), sources):
            for folder in folders:
                grey = np.asarray(Image.open(SAMPLES_DIR / pair_type / folder / source.name).convert("L"))[
                    96:160, 96:160
                ]
                _write_dicom_slice(root / pair_type / folder / f"{case}010.dcm", grey, MODALITY_OF_FOLDER[folder])
    return root


def test_training_on_identified_dicom_data_keeps_identity_out_of_mlflow_and_logs(tmp_path):
    pytest.importorskip("mlflow")
    dataset, out, ckpt = _dicom_dataset(tmp_path / "dataset"), tmp_path / "out", tmp_path / "ckpt"
    assert _leaks(_files(dataset))
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str(BUNDLE / "configs" / "train.json"),
        "--dataset_dir", str(dataset),
        "--validation_cases", "[37]",
        "--ckpt_dir", str(ckpt),
        "--output_dir", str(out),
        "--epochs", "1",
        "--max_iterations_per_epoch", "2",
        "--batch_size", "2",
        "--crop_size", "[32, 32]",
        "--num_workers", "0",
        "--tracking", "mlflow",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread, no contention on a shared CPU
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    store = _files(out)
    assert any(path.endswith("mlruns.db") for path in store), sorted(store)  # the MLflow database was written
    assert any("fused_epoch_001" in path for path in store)  # with artifacts (the sample grid)
    blobs = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode(), **store, **_files(ckpt)}
    assert not _leaks(blobs)
