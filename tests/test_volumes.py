"""3D volumes end to end on the phantom: loading and checks, slice-wise fusion, NIfTI and DICOM outputs, the CLI."""

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import PydicomReader
from monai.data.meta_tensor import MetaTensor
from monai.transforms import LoadImage
from PIL import Image

from mmif_monai.cli.main import main
from mmif_monai.fusion.pipeline import fuse_batch
from mmif_monai.fusion.volumes import apply_colormap, fuse_volume, resolve_axis
from mmif_monai.io.dicom_series import FUSED_IMAGE_TYPE, write_fused_series
from mmif_monai.io.volumes import DICOM_IDENTITY_KEY, load_volume
from mmif_monai.jobs.volumes import fuse_volume_files
from mmif_monai.phantoms import grid_affine, write_phantom_dicom_study, write_phantom_nifti
from mmif_monai.transforms import rgb_to_yiq

SHAPE = (64, 64, 48)


def average(a, b):
    return (a + b) / 2


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    return write_phantom_nifti(tmp_path_factory.mktemp("nifti"), shape=SHAPE)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_phantom_dicom_study(tmp_path_factory.mktemp("study"), shape=SHAPE)


def _copy_series(source, target):
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        shutil.copy(path, target / f"{source.name}_{path.name}")
    return target


def _series_geometry(folder):
    """(position, orientation, pixel spacing) of each image of a series, sorted by position along the normal."""
    rows = []
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows.append(
            (
                np.array(ds.ImagePositionPatient, float),
                np.array(ds.ImageOrientationPatient, float),
                np.array(ds.PixelSpacing, float),
            )
        )
    normal = np.cross(rows[0][1][:3], rows[0][1][3:])
    return sorted(rows, key=lambda row: float(row[0] @ normal))


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


# ---------------------------------------------------------------- loading


def test_nifti_loads_channel_first_with_its_affine(nifti):
    volume = load_volume(nifti.anatomical)
    assert isinstance(volume, MetaTensor) and volume.shape == (1, *SHAPE) and volume.dtype == torch.float32
    assert np.allclose(volume.affine.numpy(), nib.load(nifti.anatomical).affine)
    assert float(volume.min()) == -1024  # Hounsfield units, not rescaled


def test_itk_formats_load_like_nifti(nifti, tmp_path):
    import itk

    for suffix in (".mha", ".nrrd"):
        path = tmp_path / f"ct{suffix}"
        itk.imwrite(itk.imread(str(nifti.anatomical)), str(path))
        volume, reference = load_volume(path), load_volume(nifti.anatomical)
        assert volume.shape == reference.shape
        assert np.allclose(volume.affine.numpy(), reference.affine.numpy(), atol=1e-4)
        assert torch.equal(volume.as_tensor(), reference.as_tensor())


def test_dicom_series_loads_with_geometry_identity_and_modality(study):
    ct = load_volume(study.ct_dir)
    assert ct.shape == (1, *SHAPE) and ct.meta["modality"] == "CT"
    identity = ct.meta[DICOM_IDENTITY_KEY]
    assert identity["PatientID"] == study.patient_id and identity["StudyInstanceUID"] == study.study_instance_uid
    assert np.allclose(ct.affine.numpy(), grid_affine(SHAPE, (240, 240, 216), "LPI"), atol=1e-3)
    pet = load_volume(study.pt_dir)
    assert pet.meta["modality"] == "PT" and pet.shape == (1, 32, 32, 24)


def test_study_folder_series_are_chosen_by_selector_or_role(study, tmp_path):
    folder = _copy_series(study.pt_dir, _copy_series(study.ct_dir, tmp_path / "study"))
    with pytest.raises(ValueError, match="holds 2 series") as error:
        load_volume(folder)
    assert str(folder) in str(error.value) and "PET FDG BRAIN PHANTOM" in str(error.value)
    assert load_volume(folder, series="PT").meta["modality"] == "PT"
    assert load_volume(folder, series="ct head phantom").meta["modality"] == "CT"
    assert load_volume(folder, role="functional").meta["modality"] == "PT"
    ct = load_volume(folder, role="anatomical")
    assert ct.meta["modality"] == "CT"
    with pytest.raises(ValueError, match="no series matches 'MR'"):
        load_volume(folder, series="MR")
    # the functional series of a study is never its anatomical one: the CT matches no functional rule
    pet_uid = load_volume(folder, series="PT").meta[DICOM_IDENTITY_KEY]["SeriesInstanceUID"]
    with pytest.raises(ValueError, match="no functional series other than the anatomical one: none matches") as error:
        load_volume(folder, role="functional", exclude_uid=pet_uid)
    assert str(folder) in str(error.value) and "Modality '(?i)^(PT|NM)$'" in str(error.value)


def test_a_study_folder_with_a_subfolder_per_series_is_read_by_the_deploy_apps_rules(study, tmp_path):
    """STUDY/CT and STUDY/PT, as the Deploy app reads a study. Two series of the first rule that matches (two CT
    series) are not chosen between by SeriesNumber, as the Deploy app must: the user is asked to choose."""
    folder = study.ct_dir.parent
    ct = load_volume(folder, role="anatomical")
    assert str(ct.meta["filename_or_obj"]) == str(study.ct_dir) and ct.meta["modality"] == "CT"
    assert load_volume(folder, role="functional").meta["modality"] == "PT"
    copy = tmp_path / "study"
    shutil.copytree(folder, copy)
    repeat = copy / "CT_REPEAT"
    repeat.mkdir()
    uid = pydicom.uid.generate_uid()
    for path in sorted((copy / "CT").iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SOPInstanceUID = uid, 1, pydicom.uid.generate_uid()
        ds.SeriesDescription = "CT REPEAT"
        ds.save_as(repeat / path.name)
    with pytest.raises(ValueError, match="holds 3 series, choose one with --series") as error:
        load_volume(copy, role="anatomical")
    assert str(copy) in str(error.value) and "CT 'CT REPEAT'" in str(error.value)
    assert load_volume(copy, series="CT REPEAT").meta[DICOM_IDENTITY_KEY]["SeriesInstanceUID"] == uid
    assert load_volume(copy, role="functional").meta["modality"] == "PT"
    # a series whose files lie in two folders cannot be read as one
    shutil.move(repeat / "IM000001.dcm", copy / "CT" / "IM999999.dcm")
    with pytest.raises(ValueError, match=r"the files of series CT 'CT REPEAT' lie in 2 folders \(") as error:
        load_volume(copy, series="PT")
    assert str(copy) in str(error.value)


@pytest.mark.parametrize(
    "conditions, matched",
    [
        ({"Modality": "ct"}, True),  # equal without regard to case
        ({"Modality": "(?i)^(PT|CT)$"}, True),  # a regular expression that finds it
        ({"SeriesDescription": "head"}, True),  # found inside the text, case-insensitive
        ({"Modality": "^MR$"}, False),
        ({"SeriesNumber": 2}, True),  # numbers by value
        ({"SeriesNumber": 3}, False),
        ({"BodyPartExamined": "HEAD"}, False),  # an attribute the header lacks matches nothing
        ({"Modality": "CT", "SeriesDescription": ""}, True),  # an empty condition matches anything
    ],
)
def test_series_rules_match_text_and_numbers_as_the_deploy_selector_does(study, conditions, matched):
    from mmif_monai.deploy.selection import series_matches

    header = pydicom.dcmread(next(study.ct_dir.iterdir()), stop_before_pixels=True)
    assert series_matches(conditions, header) is matched


def test_a_series_rule_only_the_deploy_selector_matches_is_refused_by_name(study):
    from mmif_monai.deploy.selection import series_matches

    header = pydicom.dcmread(next(study.ct_dir.iterdir()), stop_before_pixels=True)
    with pytest.raises(ValueError, match=r"SeriesNumber: \[1, 3\]: only text and number conditions"):
        series_matches({"SeriesNumber": [1, 3]}, header)


def test_a_dicomdir_and_other_files_beside_the_series_are_passed_over(study, tmp_path):
    folder = _copy_series(study.ct_dir, tmp_path / "ct")
    index = pydicom.Dataset()
    index.file_meta = pydicom.dataset.FileMetaDataset()
    index.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
    index.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    index.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    index.FileSetID = "PHANTOM"
    index.save_as(folder / "DICOMDIR", enforce_file_format=True)
    (folder / "README.txt").write_text("exported from the scanner")
    volume = load_volume(folder)
    assert volume.shape[1:] == SHAPE and volume.meta["modality"] == "CT"


def test_missing_slice_is_refused(study, tmp_path):
    folder = _copy_series(study.ct_dir, tmp_path / "ct")
    sorted(folder.iterdir())[SHAPE[2] // 2].unlink()
    with pytest.raises(ValueError, match="missing slices") as error:
        load_volume(folder)
    assert str(folder) in str(error.value)


def test_repeated_slice_positions_are_refused_as_4d(study, tmp_path):
    folder = _copy_series(study.pt_dir, tmp_path / "dynamic")
    for path in sorted(folder.iterdir()):  # a second time frame at the same positions
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber += 1000
        ds.save_as(folder / f"frame2_{path.name}")
    with pytest.raises(ValueError, match="4D"):
        load_volume(folder)


def test_two_patients_in_one_series_are_refused(study, tmp_path):
    folder = _copy_series(study.ct_dir, tmp_path / "mixed")
    path = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(path)
    ds.PatientID = "SOMEONE-ELSE"
    ds.save_as(path)
    with pytest.raises(ValueError, match="2 patients") as error:
        load_volume(folder)
    assert "SOMEONE-ELSE" not in str(error.value) and study.patient_id not in str(error.value)


def test_4d_nifti_is_refused(tmp_path):
    path = tmp_path / "dynamic.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), path)
    with pytest.raises(ValueError, match="4D") as error:
        load_volume(path)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- fusion


def _volume(data, affine=None):
    return MetaTensor(
        torch.as_tensor(data, dtype=torch.float32), affine=torch.as_tensor(affine if affine is not None else np.eye(4))
    )


def test_slice_wise_fusion_does_not_depend_on_the_axis_for_a_pixelwise_rule():
    generator = torch.Generator().manual_seed(0)
    anatomical = _volume(torch.rand((1, 12, 10, 8), generator=generator))
    functional = torch.rand((1, 12, 10, 8), generator=generator)
    results = [
        fuse_volume(average, anatomical, functional, axis=axis, batch_size=3, colour=False) for axis in (0, 1, 2)
    ]
    for fused in results:
        assert fused.shape == (1, 12, 10, 8)
        assert torch.allclose(fused.as_tensor(), (anatomical.as_tensor() + functional) / 2, atol=1e-6)
        assert torch.equal(fused.affine, anatomical.affine)


def test_only_the_joint_foreground_is_fused_and_it_matches_full_frame_fusion_within_the_stated_tolerance():
    from mmif_monai.fusion.methods import load_fusion_method
    from mmif_monai.io.images import read_slice
    from mmif_monai.io.paths import SAMPLES_DIR

    network, _ = load_fusion_method("mmif-net")
    seen = []

    def counting(a, b):
        seen.append(tuple(a.shape))
        return network(a, b)

    def on_canvas(image, side=192):  # a 64 x 64 head in the middle of a larger, exactly black field of view
        small = torch.nn.functional.interpolate(image[None], size=(64, 64), mode="area")[0, 0]
        canvas = torch.zeros(side, side)
        canvas[64:128, 64:128] = small
        return canvas

    pair = SAMPLES_DIR / "mri_pet"
    mri, pet = read_slice(pair / "MRI" / "30061.png"), read_slice(pair / "PET" / "30061.png").mean(0, keepdim=True)
    empty = torch.zeros(192, 192)
    anatomical = _volume(torch.stack([on_canvas(mri), empty, on_canvas(mri.flip(1))], -1)[None])
    functional = torch.stack([on_canvas(pet), empty, on_canvas(pet.flip(2))], -1)[None]
    full = fuse_volume(network, anatomical, functional, axis=2, colour=False, foreground_only=False)
    cropped = fuse_volume(counting, anatomical, functional, axis=2, colour=False)
    # the empty slice is skipped, and the others are fused in the head's box grown by the margin (64 + 2 * 32)
    assert seen == [(2, 1, 128, 128)]
    assert torch.count_nonzero(cropped[..., 1]) == 0
    support = ((anatomical > 0) | (functional > 0))[0]
    assert torch.count_nonzero(cropped[0][~support]) == 0 and torch.count_nonzero(full[0][~support]) == 0
    # stated tolerance: MMIF-Net's attention pools over the whole slice, so a smaller field of view moves the
    # fused values a little (measured here: mean 0.008, 99th percentile 0.053 of the [0, 1] range over the heads)
    difference = (full - cropped).abs()[0][support]
    assert float(difference.mean()) < 0.015 and float(difference.quantile(0.99)) < 0.1


def test_pet_is_coloured_and_keeps_its_chrominance():
    generator = torch.Generator().manual_seed(1)
    anatomical = _volume(torch.rand((1, 8, 9, 10), generator=generator))
    pet = MetaTensor(torch.rand((1, 8, 9, 10), generator=generator), meta={"modality": "PT"})
    fused = fuse_volume(average, anatomical, pet, axis=2)
    assert fused.shape == (3, 8, 9, 10)
    coloured = apply_colormap(pet.as_tensor())
    expected = fuse_batch(average, anatomical.as_tensor().movedim(3, 0), coloured.movedim(3, 0)).movedim(0, 3)
    assert torch.allclose(fused.as_tensor(), expected, atol=1e-6)
    # where nothing is clipped, the hue of the PET colour map survives: I and Q are the colour-mapped PET's
    inside = (expected > 0.01).all(0) & (expected < 0.99).all(0)
    assert torch.allclose(rgb_to_yiq(fused.as_tensor(), 0)[1:, inside], rgb_to_yiq(coloured, 0)[1:, inside], atol=1e-5)


def test_named_axes_follow_the_affine():
    axial_last = grid_affine((4, 5, 6), (40, 50, 60), "LPI")
    assert [resolve_axis(name, axial_last) for name in ("sagittal", "coronal", "axial")] == [0, 1, 2]
    axial_first = grid_affine((6, 5, 4), (60, 50, 40), "SAR")
    assert [resolve_axis(name, axial_first) for name in ("sagittal", "coronal", "axial")] == [2, 1, 0]
    with pytest.raises(ValueError, match="axis"):
        resolve_axis("oblique", axial_last)


# ---------------------------------------------------------------- outputs


def test_previews_of_a_small_volume_are_enlarged_for_viewing_and_keep_its_aspect():
    from mmif_monai.fusion.volumes import PREVIEW_MIN_SIDE, preview_slices

    volume = _volume(torch.rand((1, 64, 64, 32)), np.diag([1.0, 1.0, 2.0, 1.0]))
    previews = preview_slices(volume)
    assert previews["axial"].shape == (1, PREVIEW_MIN_SIDE, PREVIEW_MIN_SIDE)
    # coronal: 64 mm across, 32 x 2 = 64 mm down: square; the anisotropic voxels are stretched, then enlarged
    assert previews["coronal"].shape == (1, PREVIEW_MIN_SIDE, PREVIEW_MIN_SIDE)
    large = preview_slices(_volume(torch.rand((1, 300, 300, 10))))
    assert large["axial"].shape == (1, 300, 300)  # a large view keeps its size


def test_nifti_output_keeps_the_anatomical_affine_and_is_rgb_for_pet(nifti, tmp_path):
    output = tmp_path / "fused.nii.gz"
    lines = []
    result = fuse_volume_files(nifti.anatomical, nifti.functional, output, method="average", report=lines.append)
    written = result.outputs
    assert written[0] == output and all(p.is_file() for p in written)
    assert {p.name for p in written[1:]} == {"fused_axial.png", "fused_coronal.png", "fused_sagittal.png"}
    image = nib.load(output)
    assert image.shape == (*SHAPE, 3) and image.get_data_dtype() == np.uint8  # RGB: a 4th dimension of 3
    assert np.allclose(image.affine, nib.load(nifti.anatomical).affine, atol=1e-5)
    rgb = np.asarray(image.dataobj).astype(int)
    assert (rgb.max(-1) - rgb.min(-1)).max() > 100  # coloured, not grey
    assert any(line.startswith("timing:") for line in lines)
    assert list(result.timings) == ["load", "normalise", "align", "model", "fuse", "write"]
    assert result.count == SHAPE[2] and result.unit == "slice"  # axial slices of the RAS phantom
    assert result.summary().startswith(f"fused {SHAPE[2]} slices in ")
    assert Image.open(written[1]).mode == "RGB"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_grey_functional_gives_a_grey_nifti(nifti, tmp_path):
    output = tmp_path / "grey.nii"
    fuse_volume_files(
        nifti.anatomical, nifti.functional, output, method="average", modalities=("CT", "MR"), axis="coronal"
    )
    assert nib.load(output).shape == SHAPE


def test_dicom_output_keeps_identity_and_geometry(study, tmp_path):
    out = tmp_path / "FUSED"
    written = fuse_volume_files(study.ct_dir, study.pt_dir, out, output_format="dicom", method="average").outputs
    assert written[0] == out and len(list(out.iterdir())) == SHAPE[2]
    source = pydicom.dcmread(next(study.ct_dir.iterdir()), stop_before_pixels=True)
    pet = pydicom.dcmread(next(study.pt_dir.iterdir()), stop_before_pixels=True)
    series_uids = set()
    for path in out.iterdir():
        ds = pydicom.dcmread(path)
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert ds.get(keyword) == source.get(keyword)
        assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert list(ds.ImageType) == list(FUSED_IMAGE_TYPE) and "DERIVED" in ds.SeriesDescription
        assert "fused" in ds.SeriesDescription.lower()
        assert ds.PhotometricInterpretation == "RGB" and ds.pixel_array.shape == (SHAPE[1], SHAPE[0], 3)
        series_uids.add(ds.SeriesInstanceUID)
    assert len(series_uids) == 1 and series_uids.isdisjoint({source.SeriesInstanceUID, pet.SeriesInstanceUID})
    # the series names the two it was computed from, and each image the CT image on its plane
    ct_instances = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in study.ct_dir.iterdir()}
    for path in out.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert {item.SeriesInstanceUID for item in ds.ReferencedSeriesSequence} == {
            source.SeriesInstanceUID,
            pet.SeriesInstanceUID,
        }
        assert len({item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence} & ct_instances) == 1
    for (position, orientation, spacing), (src_position, src_orientation, src_spacing) in zip(
        _series_geometry(out), _series_geometry(study.ct_dir)
    ):
        assert np.allclose(position, src_position, atol=1e-3)
        assert np.allclose(orientation, src_orientation, atol=1e-5) and np.allclose(spacing, src_spacing)


def test_dicom_output_reads_back_through_monai_on_the_anatomical_grid(study, tmp_path):
    ct = load_volume(study.ct_dir)
    fused = MetaTensor(torch.linspace(0, 1, ct.numel()).reshape(ct.shape), affine=ct.affine.clone())
    out = tmp_path / "grey"
    write_fused_series(fused, ct, out)
    back = LoadImage(reader=PydicomReader(), image_only=True, ensure_channel_first=True)(out)
    assert back.shape == ct.shape
    assert np.allclose(back.affine.numpy(), ct.affine.numpy(), atol=1e-3)
    assert torch.allclose(back.as_tensor() / 255.0, fused.as_tensor(), atol=0.5 / 255 + 1e-6)


def test_dicom_output_from_nifti_starts_a_new_study(tmp_path):
    fused = MetaTensor(torch.rand(3, 16, 12, 6), affine=torch.as_tensor(grid_affine((16, 12, 6), (32, 24, 12))))
    paths = write_fused_series(fused, None, tmp_path / "new")
    ds = pydicom.dcmread(paths[0])
    assert ds.StudyInstanceUID and ds.FrameOfReferenceUID and "DERIVED" in ds.ImageType
    with pytest.raises(FileExistsError):
        write_fused_series(fused, None, tmp_path / "new")


# ---------------------------------------------------------------- the command


def test_cli_fuses_nifti_and_dicom_phantoms(nifti, study, tmp_path, capsys):
    out = tmp_path / "fused.nii.gz"
    args = ["fuse", "--method", "average", "--anatomical", str(nifti.anatomical), "--functional", str(nifti.functional)]
    assert main([*args, "-o", str(out)]) == 0
    assert out.is_file() and "timing:" in capsys.readouterr().out
    dicom = ["fuse", "--method", "average", "--anatomical", str(study.ct_dir), "--functional", str(study.pt_dir)]
    assert main([*dicom, "-o", str(tmp_path / "DCM"), "--format", "dicom", "--axis", "sagittal"]) == 0
    assert len(list((tmp_path / "DCM").iterdir())) == SHAPE[2]


def _refused(capsys, tmp_path, args, expected):
    before = _files(tmp_path)
    assert main(["fuse", "--method", "average", *args]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("mmif: error:") and "\n" not in error and expected in error, error
    assert _files(tmp_path) == before  # nothing written, no staging folder left
    return error


def test_cli_refuses_bad_inputs_and_writes_nothing(nifti, study, tmp_path, capsys):
    out = ["-o", str(tmp_path / "out" / "fused.nii.gz")]
    # fields of view far apart
    far = tmp_path / "far_pet.nii.gz"
    pet = nib.load(nifti.functional)
    shifted = pet.affine.copy()
    shifted[2, 3] += 800.0
    nib.save(nib.Nifti1Image(np.asarray(pet.dataobj), shifted), far)
    error = _refused(
        capsys, tmp_path, ["--anatomical", str(nifti.anatomical), "--functional", str(far), *out], str(far)
    )
    assert "overlap" in error
    # 4D data
    dynamic = tmp_path / "dynamic.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16, 4), np.float32), pet.affine), dynamic)
    _refused(capsys, tmp_path, ["--anatomical", str(nifti.anatomical), "--functional", str(dynamic), *out], "4D")
    # two patients
    other = write_phantom_dicom_study(tmp_path / "other_patient", shape=(16, 16, 12), patient_id="PHANTOM-002")
    args = ["--anatomical", str(study.ct_dir), "--functional", str(other.pt_dir), "--format", "dicom"]
    error = _refused(capsys, tmp_path, [*args, "-o", str(tmp_path / "out" / "DCM")], "two patients")
    assert str(other.pt_dir) in error and "PHANTOM-00" not in error  # the series named, never the PatientIDs
    # missing slices
    gap = _copy_series(study.ct_dir, tmp_path / "gap")
    sorted(gap.iterdir())[10].unlink()
    _refused(capsys, tmp_path, ["--anatomical", str(gap), "--functional", str(study.pt_dir), *out], "missing slices")


def test_cli_keeps_existing_output_without_overwrite(nifti, tmp_path, capsys):
    out = tmp_path / "fused.nii.gz"
    out.write_bytes(b"keep me")
    args = ["--anatomical", str(nifti.anatomical), "--functional", str(nifti.functional), "-o", str(out)]
    _refused(capsys, tmp_path, args, "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert main(["fuse", "--method", "average", *args, "--overwrite"]) == 0
    assert nib.load(out).shape == (*SHAPE, 3)


def test_cli_fuses_a_study_folder_with_ct_and_pt_subfolders_as_its_two_series(study, tmp_path, capsys):
    folder = str(study.ct_dir.parent)
    args = ["fuse", "--method", "average", "--format", "dicom"]
    assert main([*args, "--anatomical", folder, "--functional", folder, "-o", str(tmp_path / "study")]) == 0
    notes = capsys.readouterr().out
    assert f"series: anatomical CT 'CT HEAD PHANTOM' ({study.ct_dir}), functional PT" in notes, notes
    assert (
        main(
            [
                *args,
                "--anatomical",
                str(study.ct_dir),
                "--functional",
                str(study.pt_dir),
                "-o",
                str(tmp_path / "series"),
            ]
        )
        == 0
    )
    by_study, by_series = (sorted((tmp_path / name).iterdir()) for name in ("study", "series"))
    assert [p.name for p in by_study] == [p.name for p in by_series] and len(by_study) == SHAPE[2]
    for a, b in zip(by_study, by_series):  # the same pixels: the same two series were fused
        assert np.array_equal(pydicom.dcmread(a).pixel_array, pydicom.dcmread(b).pixel_array)


def test_cli_volume_options_need_volumes(tmp_path, capsys):
    from mmif_monai.io.paths import SAMPLES_DIR

    pair = SAMPLES_DIR / "mri_ct"
    args = ["--anatomical", str(pair / "MRI/37010.png"), "--functional", str(pair / "CT/37010.png")]
    _refused(capsys, tmp_path, [*args, "-o", str(tmp_path / "x.png"), "--format", "dicom"], "3D volumes only")
