"""Bone fidelity of fused MRI–CT images (mmif_monai.metrics.bone): bone the CT paints white must stay white."""

import numpy as np
import pytest
import torch

from mmif_monai.fusion.classical import average_fusion, max_fusion
from mmif_monai.io.images import read_slice
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.metrics.bone import BONE_BOUND, BONE_MIN_LEVEL, BoneFidelity, BonePixels, bone_pixels
from mmif_monai.metrics.report import load_grey


def _skull_phantom() -> tuple[np.ndarray, np.ndarray]:
    """A CT ring of white bone around grey brain, and an MRI that shows the same ring dark inside bright scalp."""
    yy, xx = np.mgrid[:64, :64]
    radius = np.hypot(yy - 32, xx - 32)
    ct = np.where(radius < 20, 120.0, 0.0)
    ct[(radius >= 20) & (radius < 24)] = 255.0
    mri = np.where(radius < 20, 150.0, 0.0)
    mri[(radius >= 24) & (radius < 27)] = 220.0  # scalp
    return mri, ct


def test_bone_pixels_are_the_ct_pixels_at_the_bone_level():
    mri, ct = _skull_phantom()
    pixels = bone_pixels(ct, ct)
    assert pixels.ct.size == int((ct >= BONE_MIN_LEVEL).sum()) > 0 and np.all(pixels.fused == 255)
    with pytest.raises(ValueError, match="one size"):
        bone_pixels(mri[:-1], ct)


def test_max_keeps_the_bone_white_averaging_greys_all_of_it():
    mri, ct = _skull_phantom()
    kept = BoneFidelity.of(bone_pixels(np.maximum(mri, ct), ct))
    greyed = BoneFidelity.of(bone_pixels((mri + ct) / 2, ct))
    assert kept.brightness == pytest.approx(1.0) and kept.greyed == 0.0 and BONE_BOUND.met(kept)
    assert greyed.brightness == pytest.approx(0.5) and greyed.greyed == 1.0 and not BONE_BOUND.met(greyed)


def test_a_dark_band_inside_the_bone_counts_as_greyed_by_its_share():
    mri, ct = _skull_phantom()
    fused = ct.copy()
    bone = ct >= BONE_MIN_LEVEL
    band = bone & (np.hypot(*np.mgrid[-32:32, -32:32]) < 21)  # the inner contour of the ring
    fused[band] = 90.0
    fidelity = BoneFidelity.of(bone_pixels(fused, ct))
    assert fidelity.greyed == pytest.approx(band.sum() / bone.sum())
    assert fidelity.brightness == pytest.approx(fused[bone].mean() / 255)


def test_pooling_weights_images_by_their_bone_pixels_and_an_empty_set_is_nan():
    a = BonePixels(np.array([100.0]), np.array([255.0]))
    b = BonePixels(np.full(3, 255.0), np.full(3, 255.0))
    assert BoneFidelity.of(BonePixels.concatenate([a, b])).greyed == pytest.approx(0.25)
    empty = BoneFidelity.of(bone_pixels(np.zeros((4, 4)), np.zeros((4, 4))))
    assert empty.pixels == 0 and np.isnan(empty.greyed)


def test_on_a_sample_ct_pair_max_meets_the_bound_and_average_does_not():
    pair = SAMPLES_DIR / "mri_ct"
    name = sorted(p.name for p in (pair / "CT").iterdir())[0]
    mri, ct = (read_slice(pair / folder / name)[None] for folder in ("MRI", "CT"))
    ct_grey = load_grey(pair / "CT" / name)
    for rule, met in ((max_fusion, True), (average_fusion, False)):
        fused = rule(torch.as_tensor(mri), torch.as_tensor(ct))[0, 0]
        fused_grey = np.round(fused.numpy() * 255)
        assert BONE_BOUND.met(BoneFidelity.of(bone_pixels(fused_grey, ct_grey))) is met
