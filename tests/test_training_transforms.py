"""The transforms of the training recipe and of the shifted validation variant: crop-centre weights on the
foreground, and a gamma that scales an image's mean grey."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.transforms import RandWeightedCropd

from mmif_monai.transforms import ForegroundWeight, ForegroundWeightd, ScaleMeanByGamma, ScaleMeanByGammad
from mmif_monai.transforms.shift import gamma_for_mean_ratio


def test_foreground_weight_is_one_where_any_channel_is_bright_and_small_elsewhere():
    image = torch.zeros(2, 4, 5)
    image[0, 1, 1] = 0.5  # anatomy only
    image[1, 2, 3] = 0.2  # uptake only
    image[0, 3, 0] = 1 / 255  # black-background noise, below the threshold
    weight = ForegroundWeight(background_weight=0.01)(image)
    assert weight.shape == (1, 4, 5)
    expected = torch.full((1, 4, 5), 0.01)
    expected[0, 1, 1] = expected[0, 2, 3] = 1.0
    assert torch.equal(weight, expected)


def test_weighted_crops_are_centred_on_the_foreground():
    """With background weight 0 MONAI's RandWeightedCropd takes every centre from the foreground: a 3x3 crop of a
    slice with one bright 3x3 block always holds the block's centre pixel."""
    image = torch.zeros(1, 32, 32)
    image[0, 20:23, 5:8] = 1.0
    data = ForegroundWeightd("image", background_weight=0.0)({"image": image})
    crop = RandWeightedCropd("image", w_key="crop_weight", spatial_size=(3, 3), num_samples=20)
    crop.set_random_state(0)
    for sample in crop(data):
        assert float(sample["image"].sum()) >= 1.0  # the crop centre is a foreground pixel


def test_foreground_weightd_makes_one_map_from_one_key():
    with pytest.raises(ValueError, match="one key"):
        ForegroundWeightd(["a", "b"])


@settings(max_examples=30, deadline=None)
@given(ratio=st.floats(0.2, 0.9), seed=st.integers(0, 2**16))
def test_gamma_scales_the_mean_grey_by_the_ratio(ratio, seed):
    image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(seed))
    image[:, :8] = 0  # background stays black under any gamma
    shifted = ScaleMeanByGamma(ratio)(image)
    # bisection on log(gamma) to 60 halvings of [-8, 8]: the mean lands on the target to float rounding
    assert float(shifted.mean()) == pytest.approx(ratio * float(image.mean()), rel=1e-4)
    assert torch.equal(shifted[:, :8], image[:, :8])
    # a gamma keeps the order of grey levels: darker stays darker
    order = torch.argsort(image.flatten())
    assert bool((shifted.flatten()[order].diff() >= 0).all())


def test_halving_the_mean_darkens_with_a_gamma_above_one_and_keeps_numpy_input_numpy():
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    assert gamma_for_mean_ratio(torch.from_numpy(image), 0.5) > 1
    shifted = ScaleMeanByGammad("image")({"image": image})["image"]
    assert isinstance(shifted, np.ndarray) and shifted.dtype == np.float32
    assert shifted.mean() == pytest.approx(image.mean() / 2, rel=1e-4)


def test_a_black_image_is_returned_unchanged_and_a_bad_ratio_refused():
    black = torch.zeros(1, 4, 4)
    assert ScaleMeanByGamma()(black) is black
    with pytest.raises(ValueError, match="positive"):
        ScaleMeanByGamma(0)
