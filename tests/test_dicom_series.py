"""The fused DICOM series as a DICOM file: the Secondary Capture IOD, checked by dciodvfy (dicom3tools), and the
references to the source images (docs/deploy.md, "The fused series")."""

import numpy as np
import pydicom
import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_checks import dciodvfy
from mmif_monai.io.dicom_series import (
    DERIVATION_CODE,
    SOURCE_PURPOSE_CODE,
    SourceSeries,
    patient_orientation,
    slice_datasets,
    write_fused_series,
)
from mmif_monai.io.volumes import load_volume
from mmif_monai.phantoms import grid_affine, rigid_matrix, write_phantom_dicom_study
from mmif_monai.registration import align_volumes

# CT 16 x 16 x 12 voxels, PET 8 x 8 x 8 on a coarser grid of another field of view
SHAPE = (16, 16, 12)
BODY_PART_TAG = "00180015"  # BodyPartExamined in a DICOM volume's meta (DICOM JSON of the first header)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_phantom_dicom_study(tmp_path_factory.mktemp("study"), shape=SHAPE)


def _headers(folder) -> list[Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(folder.iterdir())]


def _sources(study) -> list[SourceSeries]:
    return [SourceSeries.from_datasets(_headers(folder)) for folder in (study.ct_dir, study.pt_dir)]


@pytest.mark.parametrize("channels", [1, 3], ids=["grey", "rgb"])
@pytest.mark.parametrize("with_sources", [True, False], ids=["references", "no-references"])
def test_fused_series_passes_dciodvfy_without_an_error_or_a_warning(study, tmp_path, channels, with_sources):
    ct = load_volume(study.ct_dir)
    ct.meta[BODY_PART_TAG] = {"vr": "CS", "Value": ["HEAD"]}  # an unpaired body part: Laterality stays out
    fused = MetaTensor(torch.rand(channels, *SHAPE), affine=ct.affine.clone())
    sources = _sources(study) if with_sources else ()
    paths = write_fused_series(fused, ct, tmp_path / "fused", sources=sources)
    for path in paths:
        report = dciodvfy(path)
        assert report.split() == ["SCImage"], f"{path.name}: {report}"
    ds = pydicom.dcmread(paths[0])
    assert ds.BodyPartExamined == "HEAD" and "Laterality" not in ds
    assert ("SourceImageSequence" in ds) == with_sources


def test_without_a_body_part_laterality_is_empty_as_unknown_and_dciodvfy_only_warns(study, tmp_path):
    ct = load_volume(study.ct_dir)
    fused = MetaTensor(torch.rand(1, *SHAPE), affine=ct.affine.clone())
    (path, *_) = write_fused_series(fused, ct, tmp_path / "fused", sources=_sources(study))
    report = dciodvfy(path)
    assert "Error" not in report and report.count("Warning") == 1 and "Laterality" in report, report
    assert pydicom.dcmread(path).Laterality == ""


def test_each_fused_image_references_the_source_images_it_was_computed_from(study, tmp_path):
    ct = load_volume(study.ct_dir)
    fused = MetaTensor(torch.rand(3, *SHAPE), affine=ct.affine.clone())
    paths = write_fused_series(fused, ct, tmp_path / "fused", sources=_sources(study))
    inputs = {ds.SOPInstanceUID: ds for ds in _headers(study.ct_dir) + _headers(study.pt_dir)}
    ct_series, pt_series = (_headers(folder)[0].SeriesInstanceUID for folder in (study.ct_dir, study.pt_dir))
    pet_referenced = set()
    for path in paths:
        ds = pydicom.dcmread(path)
        assert [(item.CodeValue, item.CodingSchemeDesignator) for item in ds.DerivationCodeSequence] == [
            (DERIVATION_CODE.value, "DCM")
        ]
        assert ds.PatientOrientation == ["L", "P"]  # the phantom CT's axial slices: rows to the left, columns back
        # every reference resolves to an input image of that SOP class
        referenced = [(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) for item in ds.SourceImageSequence]
        assert all(inputs[uid].SOPClassUID == sop_class for sop_class, uid in referenced)
        assert all(
            item.PurposeOfReferenceCodeSequence[0].CodeValue == SOURCE_PURPOSE_CODE.value
            for item in ds.SourceImageSequence
        )
        by_series = {uid: inputs[uid].SeriesInstanceUID for _, uid in referenced}
        # one anatomical image, the one on this plane; functional images on both sides of it
        (anatomical,) = [uid for uid, series in by_series.items() if series == ct_series]
        assert np.allclose(inputs[anatomical].ImagePositionPatient, ds.ImagePositionPatient, atol=1e-3)
        functional = {uid for uid, series in by_series.items() if series == pt_series}
        assert 1 <= len(functional) <= 3
        pet_referenced |= functional
        # the Common Instance Reference module lists the same images by series
        listed = {
            series.SeriesInstanceUID: {item.ReferencedSOPInstanceUID for item in series.ReferencedInstanceSequence}
            for series in ds.ReferencedSeriesSequence
        }
        assert listed == {ct_series: {anatomical}, pt_series: functional}
        assert "StudiesContainingOtherReferencedInstancesSequence" not in ds
    assert len(pet_referenced) > 1


def test_a_source_of_another_study_is_referenced_under_its_study(study, tmp_path):
    ct = load_volume(study.ct_dir)
    anatomical, functional = _sources(study)
    other = SourceSeries(**{**functional.__dict__, "study_instance_uid": generate_uid()})
    fused = MetaTensor(torch.rand(1, *SHAPE), affine=ct.affine.clone())
    (path, *_) = write_fused_series(fused, ct, tmp_path / "fused", sources=[anatomical, other])
    ds = pydicom.dcmread(path)
    assert [series.SeriesInstanceUID for series in ds.ReferencedSeriesSequence] == [anatomical.series_instance_uid]
    (study_item,) = ds.StudiesContainingOtherReferencedInstancesSequence
    assert study_item.StudyInstanceUID == other.study_instance_uid
    assert [series.SeriesInstanceUID for series in study_item.ReferencedSeriesSequence] == [other.series_instance_uid]


def test_the_functional_images_referenced_are_those_the_resampling_reads():
    """Resample one functional slice at a time (all ones, the rest zero) onto an anatomical grid, through a tilted
    functional grid and a registration: a fused slice references a functional image iff that image reaches it.
    A weight under 1e-3 is below what an 8-bit fused image shows, and the references leave it out."""
    anatomical_affine = grid_affine((12, 10, 9), (120.0, 100.0, 90.0), "LPI")
    anatomical = MetaTensor(torch.zeros(1, 12, 10, 9), affine=torch.as_tensor(anatomical_affine))
    functional_affine = rigid_matrix((0.0, 0.0, 4.0), (10.0, 0.0, 0.0)) @ grid_affine((8, 8, 7), (160.0, 160.0, 98.0))
    registration = rigid_matrix((2.0, -3.0, 5.0), (0.0, 6.0, 0.0))  # anatomical point -> functional header world
    base = Dataset()
    base.SOPClassUID, base.StudyInstanceUID, base.SeriesInstanceUID = "1.2.840.10008.5.1.4.1.1.128", "1.2", "1.2.3"
    series = SourceSeries.from_datasets(slice_datasets(base, functional_affine, 7), to_source=registration)
    corners = [[anatomical_affine @ (i, j, k, 1) for i in (0, 11) for j in (0, 9)] for k in range(anatomical.shape[-1])]
    # the registration corrects the functional header as align_volumes does after registering
    corrected = torch.as_tensor(np.linalg.inv(registration) @ functional_affine)
    reaches_any, reaches_visibly, referenced = set(), set(), set()
    for m, instance in enumerate(series.instances):
        one_slice = torch.zeros(1, 8, 8, 7)
        one_slice[..., m] = 1.0
        resampled, _ = align_volumes(anatomical, MetaTensor(one_slice, affine=corrected))
        peak = resampled[0].amax(dim=(0, 1))  # per anatomical slice
        reaches_any |= {(k, m) for k in range(len(peak)) if peak[k] > 0}
        reaches_visibly |= {(k, m) for k in range(len(peak)) if peak[k] > 1e-3}
        referenced |= {
            (k, m) for k in range(len(peak)) if instance in series.instances_sampled(np.array(corners[k])[:, :3])
        }
    assert reaches_visibly <= referenced <= reaches_any
    assert len(referenced) > anatomical.shape[-1]  # tilted: some slices read more than two functional images


@pytest.mark.parametrize(
    "orientation, expected",
    [
        ((1, 0, 0, 0, 1, 0), ["L", "P"]),  # axial
        ((-1, 0, 0, 0, -1, 0), ["R", "A"]),
        ((1, 0, 0, 0, 0, -1), ["L", "F"]),  # coronal
        ((0, 1, 0, 0, 0, -1), ["P", "F"]),  # sagittal
        ((0.866025, 0, 0.5, 0, 1, 0), ["LH", "P"]),  # oblique: the principal direction first
        ((0.5, -0.866025, 0, 0, 0, -1), ["AL", "F"]),
        ((1, 1e-5, 0, 0, 1, 0), ["L", "P"]),  # rounding in the header is no obliquity
    ],
)
def test_patient_orientation_names_the_row_and_column_directions(orientation, expected):
    assert patient_orientation(orientation) == expected
