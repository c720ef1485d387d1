"""The head phantom: tissue values in real units, its grids, and the misalignment it promises."""

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mmif_monai.phantoms import (
    PET_SUV,
    Tissue,
    grid_affine,
    head_tissues,
    rigid_matrix,
    write_phantom_dicom_study,
    write_phantom_nifti,
)
from mmif_monai.transforms import suv_scale_factor

SHAPE = (64, 64, 56)


@pytest.fixture(scope="module")
def nifti_pair(tmp_path_factory):
    return write_phantom_nifti(tmp_path_factory.mktemp("phantom"), shape=SHAPE)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_phantom_dicom_study(tmp_path_factory.mktemp("study"), shape=SHAPE)


def _world(affine, index):
    return affine[:3, :3] @ np.asarray(index, dtype=float) + affine[:3, 3]


def test_ct_holds_hounsfield_units_of_each_tissue(nifti_pair):
    image = nib.load(nifti_pair.anatomical)
    ct = np.asarray(image.dataobj).astype(float)
    assert image.shape == SHAPE and image.get_data_dtype() == np.int16
    affine = image.affine
    index = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), -1).reshape(-1, 3)
    tissues = head_tissues(index @ affine[:3, :3].T + affine[:3, 3]).reshape(SHAPE)
    interior = lambda label: np.median(ct[tissues == label])  # noqa: E731
    assert interior(Tissue.AIR) < -900
    assert interior(Tissue.BONE) > 600  # partial volume with the thin skull lowers it below 1100
    assert 15 < interior(Tissue.WHITE) < 45 and 15 < interior(Tissue.GREY) < 60
    assert interior(Tissue.GREY) > interior(Tissue.WHITE)


def test_pet_grid_is_coarser_and_shows_grey_matter_uptake(nifti_pair):
    ct, pet = nib.load(nifti_pair.anatomical), nib.load(nifti_pair.functional)
    assert pet.shape == tuple(n // 2 for n in SHAPE)
    assert not np.allclose(pet.affine, ct.affine)
    values = np.asarray(pet.dataobj)
    index = np.stack(np.meshgrid(*(np.arange(n) for n in pet.shape), indexing="ij"), -1).reshape(-1, 3)
    true_world = (
        index @ (nifti_pair.misalignment @ pet.affine)[:3, :3].T + (nifti_pair.misalignment @ pet.affine)[:3, 3]
    )
    tissues = head_tissues(true_world).reshape(pet.shape)
    assert values[tissues == Tissue.GREY].mean() > 1.5 * values[tissues == Tissue.WHITE].mean()
    assert values[tissues == Tissue.WHITE].mean() > 3 * values[tissues == Tissue.CSF].mean()


def test_pet_lesion_sits_where_the_misalignment_puts_it(nifti_pair):
    """The hottest blob, located through the PET header, is the lesion moved by the inverse misalignment."""
    pet = nib.load(nifti_pair.functional)
    values = np.asarray(pet.dataobj)
    hot = np.argwhere(values > 0.8 * values.max())
    weights = values[tuple(hot.T)]
    header_position = _world(pet.affine, (hot * weights[:, None]).sum(0) / weights.sum())
    lesion = np.array([26.0, -34.0, 30.0, 1.0])
    expected = (np.linalg.inv(nifti_pair.misalignment) @ lesion)[:3]
    assert np.linalg.norm(header_position - expected) < 4.0  # PET voxels here are 7.5-8 mm
    assert np.linalg.norm(expected - lesion[:3]) > 5.0  # and the misalignment is large enough to matter


def test_rigid_matrix_is_a_rotation_and_translation():
    matrix = rigid_matrix((1.0, 2.0, 3.0), (10.0, -5.0, 20.0))
    assert np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3))
    assert np.isclose(np.linalg.det(matrix[:3, :3]), 1.0)
    assert np.allclose(matrix[:3, 3], (1, 2, 3))


def test_grid_affine_points_axes_and_centres_the_grid():
    affine = grid_affine((10, 20, 30), (100.0, 200.0, 150.0), "LPI", centre_mm=(1, 2, 3))
    assert np.allclose(np.diag(affine)[:3], (-10.0, -10.0, -5.0))
    assert np.allclose(_world(affine, (4.5, 9.5, 14.5)), (1, 2, 3))


def test_dicom_study_is_one_patient_two_series_with_suv_attributes(study):
    ct_files, pt_files = sorted(study.ct_dir.iterdir()), sorted(study.pt_dir.iterdir())
    assert len(ct_files) == SHAPE[2] and len(pt_files) == SHAPE[2] // 2
    ct, pt = pydicom.dcmread(ct_files[0]), pydicom.dcmread(pt_files[0])
    for ds in (ct, pt):
        assert ds.PatientID == study.patient_id and ds.StudyInstanceUID == study.study_instance_uid
        assert ds.FrameOfReferenceUID == study.frame_of_reference_uid
    assert ct.SeriesInstanceUID != pt.SeriesInstanceUID
    assert (ct.Modality, pt.Modality) == ("CT", "PT")
    assert float(ct.RescaleIntercept) == -1024
    # the header's SUV factor turns the stored activity back into the phantom's SUV: the lesion is the peak
    slices = [pydicom.dcmread(f) for f in pt_files]
    brightest = max(ds.pixel_array.max() * float(ds.RescaleSlope) for ds in slices)
    assert brightest * suv_scale_factor(pt) == pytest.approx(PET_SUV[Tissue.LESION], rel=0.35)
