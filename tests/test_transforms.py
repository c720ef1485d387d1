"""Tests for mmif_monai.transforms: colour conversion, modality normalisation and loading."""

from __future__ import annotations

import math
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from monai.data import MetaTensor
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

from mmif_monai.io.compressed import DamagedDataError
from mmif_monai.transforms import (
    RGB_FROM_YIQ,
    YIQ_FROM_RGB,
    ImageLoadError,
    LoadModality,
    LoadModalityd,
    ModalityNormalize,
    ModalityNormalized,
    RGBToYIQ,
    RGBToYIQd,
    YIQToRGB,
    YIQToRGBd,
    is_colour,
    merge_luminance,
    rgb_to_yiq,
    split_luminance,
    suv_scale_factor,
    yiq_to_rgb,
)

# ---------------------------------------------------------------------------------------------------------- colour

rgb_images = arrays(
    np.float64,
    array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8).map(lambda s: (3, *s)),
    elements=st.floats(0.0, 1.0, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(rgb_images)
def test_yiq_round_trip_and_ranges(rgb):
    yiq = rgb_to_yiq(rgb)
    assert yiq.dtype == torch.float64
    y, i, q = yiq.numpy()
    assert np.all((y >= -1e-12) & (y <= 1 + 1e-12))
    assert np.all(np.abs(i) <= 0.596 + 1e-12) and np.all(np.abs(q) <= 0.523 + 1e-12)
    np.testing.assert_allclose(yiq_to_rgb(yiq).numpy(), rgb, rtol=0, atol=1e-6)


def test_yiq_round_trip_float32():
    rgb = torch.rand(3, 16, 9, generator=torch.Generator().manual_seed(0))
    out = YIQToRGB()(RGBToYIQ()(rgb))
    assert out.dtype == torch.float32
    assert torch.max(torch.abs(out - rgb)) < 1e-5


def test_matrices_are_exact_inverses():
    np.testing.assert_allclose(RGB_FROM_YIQ @ YIQ_FROM_RGB, np.eye(3), atol=1e-14)


@pytest.mark.parametrize(
    "rgb, expected",
    [((1.0, 1.0, 1.0), (1.0, 0.0, 0.0)), ((1.0, 0.0, 0.0), (0.299, 0.596, 0.211)), ((0.0, 0.0, 0.0), (0, 0, 0))],
)
def test_yiq_known_values(rgb, expected):
    img = torch.tensor(rgb, dtype=torch.float64).reshape(3, 1, 1).expand(3, 2, 3)
    out = RGBToYIQ()(img)
    np.testing.assert_allclose(out[:, 1, 2].numpy(), expected, atol=1e-12)


def test_grey_has_no_chrominance():
    grey = torch.rand(1, 5, 4, dtype=torch.float64).expand(3, 5, 4)
    yiq = rgb_to_yiq(grey)
    np.testing.assert_allclose(yiq[0].numpy(), grey[0].numpy(), atol=1e-12)
    assert torch.max(torch.abs(yiq[1:])) < 1e-12


def test_yiq_to_rgb_does_not_clamp():
    yiq = torch.tensor([1.0, 0.5, 0.0]).reshape(3, 1, 1)
    assert YIQToRGB()(yiq)[0].item() > 1.0


def test_rgb_to_yiq_keeps_metadata_and_numpy_input():
    img = MetaTensor(torch.rand(3, 4, 4), meta={"filename_or_obj": "x.png"})
    out = RGBToYIQ()(img)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "x.png"
    assert isinstance(RGBToYIQ()(np.random.rand(3, 2, 2)), torch.Tensor)
    with pytest.raises(ValueError, match="3 colour channels"):
        RGBToYIQ()(torch.rand(1, 4, 4))


def test_rgb_to_yiq_dict_inverse():
    rgb = MetaTensor(torch.rand(3, 6, 5, dtype=torch.float64))
    transform = RGBToYIQd(keys=["img"])
    out = transform({"img": rgb, "other": 1})
    assert out["other"] == 1 and len(out["img"].applied_operations) == 1
    back = transform.inverse(out)["img"]
    assert len(back.applied_operations) == 0
    assert torch.max(torch.abs(back - rgb)) < 1e-12
    assert torch.allclose(YIQToRGBd(keys="img")(out)["img"], rgb)


def test_split_merge_luminance():
    rgb = torch.rand(3, 7, 5)
    yiq = rgb_to_yiq(rgb)
    y, iq = split_luminance(yiq)
    assert y.shape == (1, 7, 5) and iq.shape == (2, 7, 5)
    assert torch.equal(merge_luminance(y, iq), yiq)
    # the fusion use: replace Y, keep the original chrominance
    fused = yiq_to_rgb(merge_luminance(torch.ones_like(y), iq))
    assert torch.allclose(rgb_to_yiq(fused)[1:], iq, atol=1e-5)
    # batched, channel dim 1
    batch = rgb_to_yiq(torch.rand(2, 3, 4, 4), channel_dim=1)
    yb, iqb = split_luminance(batch, channel_dim=1)
    assert yb.shape == (2, 1, 4, 4) and torch.equal(merge_luminance(yb, iqb, channel_dim=1), batch)
    with pytest.raises(ValueError):
        merge_luminance(iq, y)


# ------------------------------------------------------------------------------------------------------- intensity


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(-3000, 3000, width=32, allow_nan=False, allow_infinity=False),
    ),
    st.sampled_from(["CT", "MR", "PET", "SPECT", "PNG8"]),
)
def test_normalised_range(img, modality):
    out = ModalityNormalize(modality)(img)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_ct_window_ends():
    hu = MetaTensor(torch.tensor([[[-1000.0, -100.0, 700.0, 1500.0, 3000.0]]]), meta={"modality": "CT"})
    np.testing.assert_allclose(ModalityNormalize()(hu)[0, 0].numpy(), [0, 0, 0.5, 1, 1], atol=1e-6)
    custom = ModalityNormalize("CT", ct_window=(0, 80))(torch.tensor([[[0.0, 40.0, 80.0]]]))
    np.testing.assert_allclose(custom[0, 0].numpy(), [0, 0.5, 1], atol=1e-6)


def test_mr_percentiles():
    img = torch.from_numpy(np.random.default_rng(1).gamma(2.0, 100.0, (1, 40, 30)))
    out = ModalityNormalize("MRI")(img)
    low, high = np.percentile(img.numpy(), [0.5, 99.5])
    expected = np.clip((img.numpy() - low) / (high - low), 0, 1)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    assert out.applied_operations[-1]["extra_info"]["rule"] == "percentile"


def test_constant_image_gives_zeros_and_inverts():
    img = MetaTensor(torch.full((1, 4, 4), 37.0))
    transform = ModalityNormalize("MR")
    out = transform(img)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(transform.inverse(out), img)


@pytest.mark.parametrize(
    "photometric", [{"00280004": {"vr": "CS", "Value": ["MONOCHROME1"]}}, {"0028|0004": "MONOCHROME1"}]
)
def test_monochrome1_is_normalised_inverted_and_inverts_back(photometric):
    """A MONOCHROME1 image (by PydicomReader's DICOM JSON meta, or ITK's tag key) is shown low values white: the
    rule's result inverted; ``inverse`` gives the input back (the ramp is within the CT window, nothing clipped; a
    float32 round trip of values up to 1000 HU moves them by about 1e-4)."""
    ramp = torch.linspace(0.0, 1000.0, 16).reshape(1, 4, 4)
    plain = ModalityNormalize("CT")(MetaTensor(ramp.clone()))
    transform = ModalityNormalize("CT")
    inverted = transform(MetaTensor(ramp.clone(), meta=photometric))
    torch.testing.assert_close(inverted.as_tensor(), 1.0 - plain.as_tensor())
    torch.testing.assert_close(transform.inverse(inverted).as_tensor(), ramp, rtol=0, atol=1e-3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(bad):
    img = MetaTensor(torch.tensor([[[1.0, bad, 3.0]]]), meta={"filename_or_obj": "scan.nii"})
    with pytest.raises(ValueError, match=r"scan\.nii.*(NaN|Inf)"):
        ModalityNormalize("MR")(img)


def test_eight_bit_wins_over_modality():
    img = torch.tensor([[[0, 51, 255]]], dtype=torch.uint8)
    np.testing.assert_allclose(ModalityNormalize("CT")(img)[0, 0].numpy(), [0, 0.2, 1], atol=1e-7)
    flagged = MetaTensor(torch.tensor([[[0.0, 255.0]]]), meta={"source_dtype": "uint8", "modality": "MR"})
    np.testing.assert_allclose(ModalityNormalize()(flagged)[0, 0].numpy(), [0, 1])


def test_modality_from_meta_and_errors():
    itk_meta = MetaTensor(torch.tensor([[[-100.0, 1500.0]]]), meta={"0008|0060": "CT"})
    assert ModalityNormalize()(itk_meta).applied_operations[-1]["extra_info"]["rule"] == "ct_window"
    json_meta = MetaTensor(torch.tensor([[[-100.0, 1500.0]]]), meta={"00080060": {"vr": "CS", "Value": ["CT"]}})
    assert ModalityNormalize()(json_meta).applied_operations[-1]["extra_info"]["rule"] == "ct_window"
    with pytest.raises(ValueError, match="cannot determine the modality"):
        ModalityNormalize()(torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="unknown modality"):
        ModalityNormalize("XR")
    with pytest.raises(ValueError):
        ModalityNormalize("CT", ct_window=(10, -10))


def test_dict_normalise_per_key_and_inverse():
    data = {
        "mr": MetaTensor(torch.rand(1, 8, 8) * 500),
        "ct": MetaTensor(torch.linspace(-100, 1500, 64).reshape(1, 8, 8)),
    }
    transform = ModalityNormalized(keys=["mr", "ct"], modality=["MRI", "CT"], percentiles=(0, 100))
    out = transform(data)
    assert out["mr"].min() == 0 and out["mr"].max() == 1
    assert out["ct"].applied_operations[-1]["extra_info"]["rule"] == "ct_window"
    back = transform.inverse(out)
    for key in data:
        assert torch.allclose(back[key], data[key], atol=1e-3)


def _pet_dataset(**overrides) -> Dataset:
    ds = Dataset()
    ds.Modality = "PT"
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.PatientWeight = 70
    ds.SeriesDate = ds.AcquisitionDate = "20240101"
    ds.SeriesTime = ds.AcquisitionTime = "110000"
    isotope = Dataset()
    isotope.RadionuclideTotalDose = 370e6  # Bq
    isotope.RadionuclideHalfLife = 6586.2  # s, F-18
    isotope.RadiopharmaceuticalStartTime = "100000.00"
    ds.RadiopharmaceuticalInformationSequence = [isotope]
    for keyword, value in overrides.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def test_suv_scale_factor_hand_computed():
    # one hour after injection: 370 MBq * 2^(-3600/6586.2) = 253.32 MBq remain; 70 kg = 70000 g
    expected = 70000.0 / (370e6 * math.exp(-math.log(2) * 3600.0 / 6586.2))
    assert suv_scale_factor(_pet_dataset()) == pytest.approx(expected, rel=1e-12)
    assert suv_scale_factor(_pet_dataset()) == pytest.approx(2.7634e-4, rel=1e-4)
    # injection before midnight, scan after it
    late = _pet_dataset(SeriesTime="003000", AcquisitionTime="003000")
    late.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "233000"
    assert suv_scale_factor(late) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "overrides",
    [
        {"PatientWeight": None},
        {"SeriesTime": None},
        {"RadiopharmaceuticalInformationSequence": None},
        {"Units": "CNTS"},
        {"DecayCorrection": "ADMIN"},
        {"CorrectedImage": ["ATTN"]},
        {"PatientWeight": 0},
        {"SeriesTime": "120000"},  # series after acquisition: post-processed, scan time unknown
    ],
)
def test_suv_scale_factor_none(overrides):
    assert suv_scale_factor(_pet_dataset(**overrides)) is None


def test_suv_rule_and_fallback_to_percentiles():
    ds = _pet_dataset()
    meta = ds.to_json_dict()  # the DICOM JSON model, as PydicomReader(prune_metadata=False) stores the header
    factor = suv_scale_factor(meta)
    assert factor == pytest.approx(suv_scale_factor(ds))
    activity = MetaTensor(torch.tensor([[[0.0, 5.0 / factor, 20.0 / factor]]]), meta=meta)
    np.testing.assert_allclose(ModalityNormalize()(activity)[0, 0].numpy(), [0, 0.5, 1], atol=1e-6)
    no_suv = MetaTensor(activity.as_tensor(), meta={"modality": "PET"})
    assert ModalityNormalize()(no_suv).applied_operations[-1]["extra_info"]["rule"] == "percentile"


# -------------------------------------------------------------------------------------------------------------- io


@pytest.fixture(scope="module")
def loader():
    return LoadModality()


def test_load_grey_png_orientation(tmp_path, loader):
    grey = np.random.default_rng(2).integers(0, 256, (5, 9), dtype=np.uint8)  # H=5, W=9
    Image.fromarray(grey).save(tmp_path / "g.png")
    img = loader(tmp_path / "g.png")
    assert isinstance(img, MetaTensor) and img.shape == (1, 5, 9) and img.dtype == torch.float32
    assert img[0, 0, 8] == grey[0, 8] and img[0, 4, 0] == grey[4, 0]
    np.testing.assert_array_equal(img[0].numpy(), grey)
    assert img.meta["source_dtype"] == "uint8"
    assert tuple(img.meta["spatial_shape"]) == (5, 9)
    assert not is_colour(img)


def test_load_rgb_png(tmp_path, loader):
    rgb = np.random.default_rng(3).integers(0, 256, (4, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    img = loader(tmp_path / "c.png")
    assert img.shape == (3, 4, 7)
    np.testing.assert_array_equal(img[:, 0, 6].numpy(), rgb[0, 6])
    assert is_colour(img)
    grey_rgb = np.repeat(rgb[..., :1], 3, axis=2)
    Image.fromarray(grey_rgb).save(tmp_path / "grey_rgb.png")
    assert not is_colour(loader(tmp_path / "grey_rgb.png"))
    # palette and RGBA images come back as 3 channels
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    assert loader(tmp_path / "rgba.png").shape == (3, 4, 7)


def test_png_then_normalise_divides_by_255(tmp_path, loader):
    Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8)).save(tmp_path / "s.png")
    data = LoadModalityd(keys="img", modality="CT")({"img": tmp_path / "s.png"})
    assert data["img"].meta["modality"] == "CT"
    np.testing.assert_allclose(ModalityNormalized(keys="img")(data)["img"][0, 0].numpy(), [0, 0.2, 1], atol=1e-7)


def test_load_nifti_keeps_affine(tmp_path, loader):
    volume = np.random.default_rng(4).random((4, 5, 6)).astype(np.float32)
    affine = np.array([[2.0, 0, 0, -10], [0, 3.0, 0, 5], [0, 0, 4.0, 1], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "v.nii.gz")
    img = loader(tmp_path / "v.nii.gz")
    assert img.shape == (1, 4, 5, 6)
    np.testing.assert_allclose(img.affine.numpy(), affine)
    np.testing.assert_allclose(img[0].numpy(), volume)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_load_itk_formats(tmp_path, loader, suffix):
    itk = pytest.importorskip("itk")
    volume = np.random.default_rng(5).random((3, 4, 5)).astype(np.float32)  # numpy (z, y, x)
    image = itk.image_from_array(volume)
    image.SetSpacing([0.5, 0.75, 2.0])
    itk.imwrite(image, str(tmp_path / f"v{suffix}"))
    img = loader(tmp_path / f"v{suffix}")
    assert img.shape == (1, 5, 4, 3)  # MONAI's ITKReader indexes (x, y, z)
    np.testing.assert_allclose(img[0].numpy(), volume.transpose(2, 1, 0))
    np.testing.assert_allclose(np.abs(np.diag(img.affine.numpy())[:3]), [0.5, 0.75, 2.0])


# (file to write, file holding its compressed data): MetaImage and NRRD keep it beside a detached header
_COMPRESSED_VOLUMES = [
    ("v.nii.gz", "v.nii.gz"),
    ("v.mha", "v.mha"),
    ("v.mhd", "v.zraw"),
    ("v.nrrd", "v.nrrd"),
    ("v.nhdr", "v.raw.gz"),
]


@pytest.mark.parametrize("name, data_file", _COMPRESSED_VOLUMES)
def test_compressed_volume_data_must_decompress_intact(tmp_path, loader, name, data_file):
    """gzip's CRC-32 and zlib's Adler-32 follow the last voxel, which is where the readers stop: 64 bytes flipped in
    the middle of the compressed data decompressed into wrong voxels without an error until the streams were read
    to their end. The intact file still reads back exactly."""
    itk = pytest.importorskip("itk")
    # a smooth int16 phantom-like volume (numpy z, y, x), so the data compresses as real images do
    z, y, x = np.mgrid[:16, :24, :24]
    volume = (1000 * np.exp(-((x - 12) ** 2 + (y - 11) ** 2 + (z - 8) ** 2) / 60.0)).astype(np.int16)
    path = tmp_path / name
    if name.endswith(".nii.gz"):
        nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), np.eye(4)), path)
    else:
        itk.imwrite(itk.image_from_array(volume), str(path), compression=True)
    np.testing.assert_array_equal(loader(path)[0].numpy(), volume.transpose(2, 1, 0))
    data = bytearray((tmp_path / data_file).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    (tmp_path / data_file).write_bytes(bytes(data))
    with pytest.raises(DamagedDataError, match=rf"^{re.escape(str(path))}: damaged file: its (gzip|zlib) data"):
        loader(path)


def _write_ct_slice(path: Path, stored: np.ndarray, z: float = 0.0, instance: int = 1) -> None:
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = CTImageStorage
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = file_meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.8]  # row spacing, column spacing
    ds.SliceThickness = 2.0
    ds.PixelData = stored.astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_load_dicom_file_and_series(tmp_path, loader):
    stored = (np.arange(12, dtype=np.int16) * 100).reshape(3, 4)  # 3 rows, 4 columns
    _write_ct_slice(tmp_path / "slice.dcm", stored)
    img = loader(tmp_path / "slice.dcm")
    assert img.shape == (1, 4, 3)  # PydicomReader indexes (column, row)
    np.testing.assert_allclose(img[0].numpy().T, stored - 1024.0)
    assert img.meta["modality"] == "CT"
    np.testing.assert_allclose(np.abs(np.diag(img.affine.numpy())[:2]), [0.8, 0.5])
    series = tmp_path / "series"
    series.mkdir()
    for k in range(2):
        _write_ct_slice(series / f"IM{k}", stored + k, z=2.0 * k, instance=k + 1)  # no suffix: a folder is a series
    volume = loader(series)
    assert volume.shape == (1, 4, 3, 2)
    np.testing.assert_allclose((volume[0, ..., 1] - volume[0, ..., 0]).numpy(), 1.0)


def test_load_pet_dicom_gives_suv_metadata(tmp_path, loader):
    ds = _pet_dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = PositronEmissionTomographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = PositronEmissionTomographyImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 2, 2, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = [0, 0, 0], [1, 0, 0, 0, 1, 0], [2, 2]
    ds.PixelData = np.array([0, 100, 200, 300], dtype=np.uint16).tobytes()
    ds.save_as(tmp_path / "pet", enforce_file_format=True)  # no suffix: recognised by the DICM marker
    img = loader(tmp_path / "pet")
    assert img.meta["modality"] == "PT"
    assert suv_scale_factor(img.meta) == pytest.approx(suv_scale_factor(ds))
    assert ModalityNormalize()(img).applied_operations[-1]["extra_info"]["rule"] == "suv"


def test_missing_file(tmp_path, loader):
    missing = tmp_path / "nowhere" / "scan.png"
    with pytest.raises(FileNotFoundError, match="scan.png"):
        loader(missing)


def test_corrupt_file_one_line_error(tmp_path, loader):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(np.random.default_rng(6).bytes(256))
    with pytest.raises(ImageLoadError) as info:
        loader(bad)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and str(bad) in message and "\n" not in message


def test_unsupported_suffix(tmp_path, loader):
    other = tmp_path / "notes.txt"
    other.write_text("not an image")
    with pytest.raises(ImageLoadError, match="unsupported image format"):
        loader(other)


def test_non_finite_file_raises(tmp_path, loader):
    volume = np.ones((2, 2, 2), dtype=np.float32)
    volume[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(ImageLoadError, match=r"nan\.nii.*NaN"):
        loader(tmp_path / "nan.nii")


def test_to_luminance_reduces_rgb_to_y_and_keeps_grey_and_meta():
    from monai.data import MetaTensor

    from mmif_monai.transforms import ToLuminance, ToLuminanced

    rgb = MetaTensor(torch.rand(3, 5, 7), meta={"source_dtype": "uint8"})
    y = ToLuminance()(rgb)
    expected = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert y.shape == (1, 5, 7)
    assert torch.allclose(torch.as_tensor(y)[0], torch.as_tensor(expected), atol=1e-6)
    assert y.meta["source_dtype"] == "uint8"
    grey = torch.rand(1, 5, 7)
    assert ToLuminanced("g")({"g": grey})["g"] is grey
    with pytest.raises(ValueError, match="channels"):
        ToLuminance()(torch.rand(2, 5, 7))
