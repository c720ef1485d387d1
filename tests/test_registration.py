"""Aligning the functional phantom with the anatomical one: header resampling, overlap check, ITK registration."""

import numpy as np
import pytest
import torch

from mmif_monai.io.volumes import load_volume
from mmif_monai.phantoms import grid_affine, phantom_volume, write_phantom_nifti
from mmif_monai.registration import align_volumes, check_overlap

SHAPE = (64, 64, 64)
# points on the brain's boundary (RAS mm): where a rotation error shows most inside the region that matters
BRAIN_EDGE = np.array(
    [[0, 0, 0, 1]] + [[*(sign * axis * np.array([55.0, 75.0, 68.0])), 1] for axis in np.eye(3) for sign in (-1, 1)]
).T


@pytest.fixture(scope="module")
def misaligned(tmp_path_factory):
    files = write_phantom_nifti(tmp_path_factory.mktemp("misaligned"), shape=SHAPE)
    return files, load_volume(files.anatomical), load_volume(files.functional)


@pytest.fixture(scope="module")
def registered(misaligned, tmp_path_factory):
    _, anatomical, functional = misaligned
    transform_path = tmp_path_factory.mktemp("transform") / "rigid.tfm"
    resampled, report = align_volumes(anatomical, functional, register="rigid", transform_path=transform_path)
    return resampled, report, transform_path


def test_header_alignment_puts_the_functional_volume_on_the_anatomical_grid(tmp_path):
    files = write_phantom_nifti(tmp_path, shape=(48, 48, 40), offset_mm=(0, 0, 0), rotation_deg=(0, 0, 0))
    anatomical, functional = load_volume(files.anatomical), load_volume(files.functional)
    resampled, report = align_volumes(anatomical, functional)
    assert not report.registered and report.metric_before is None
    assert resampled.shape == anatomical.shape
    assert torch.allclose(resampled.affine, anatomical.affine)
    # without a misalignment, the resampled PET matches a PET imaged directly on the anatomical grid
    direct = phantom_volume("PT", np.asarray(anatomical.affine), anatomical.shape[1:], seed=5)
    correlation = np.corrcoef(resampled[0].numpy().ravel(), direct.ravel())[0, 1]
    assert correlation > 0.9


def test_fields_of_view_that_do_not_overlap_are_refused(misaligned):
    _, anatomical, functional = misaligned
    assert check_overlap(anatomical, functional) > 0.9
    elsewhere = functional.clone()
    elsewhere.affine = torch.as_tensor(grid_affine(functional.shape[1:], (256, 256, 230), "LAS", (0, 0, 600)))
    with pytest.raises(ValueError, match="does not overlap") as error:
        align_volumes(anatomical, elsewhere)
    assert "pet.nii.gz" in str(error.value)


def test_rigid_registration_recovers_the_known_offset_within_one_voxel(misaligned, registered):
    files, anatomical, _ = misaligned
    _, report, _ = registered
    # the transform maps anatomical points to functional-header points: the inverse of the misalignment
    error = np.linalg.norm((report.matrix @ BRAIN_EDGE - np.linalg.inv(files.misalignment) @ BRAIN_EDGE)[:3], axis=0)
    voxel = np.linalg.norm(np.asarray(anatomical.affine)[:3, :3], axis=0).min()
    print(f"registration error at the brain edge: max {error.max():.2f} mm (voxel {voxel:.2f} mm); {report.summary()}")
    assert error.max() < voxel
    # and it undid most of the misalignment
    before = np.linalg.norm((BRAIN_EDGE - np.linalg.inv(files.misalignment) @ BRAIN_EDGE)[:3], axis=0)
    assert error.max() < 0.5 * before.max()
    assert report.metric_after < report.metric_before  # ITK's Mattes metric is negative MI: lower is better


def test_registered_volume_sits_on_the_anatomical_grid_and_matches_the_truth(misaligned, registered):
    _, anatomical, functional = misaligned
    resampled, _, _ = registered
    assert resampled.shape == anatomical.shape and torch.allclose(resampled.affine, anatomical.affine)
    truth = phantom_volume("PT", np.asarray(anatomical.affine), anatomical.shape[1:], seed=5)
    unregistered, _ = align_volumes(anatomical, functional)
    corr = lambda a: np.corrcoef(a[0].numpy().ravel(), truth.ravel())[0, 1]  # noqa: E731
    assert corr(resampled) > corr(unregistered) + 0.05


def test_transform_file_holds_the_registration(registered):
    import itk

    _, report, path = registered
    assert report.transform_path == path and path.is_file()
    (saved,) = itk.transformread(str(path))
    assert np.allclose(np.asarray(saved.GetParameters()), report.parameters)
