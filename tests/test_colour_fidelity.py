"""Colour fidelity: the measure (mmif_monai.metrics.colour), the luminance limit that keeps fused PET/SPECT colour
on its scale step (mmif_monai.fusion.colour), and ``mmif fuse --colour-fidelity``."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from cli_runs import fuse_pair
from mmif_monai.fusion.classical import max_fusion
from mmif_monai.fusion.colour import COLOUR_FIDELITY, LuminanceLimit
from mmif_monai.fusion.pipeline import fuse_batch
from mmif_monai.io.images import read_slice
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.metrics.batched import edge_preservation
from mmif_monai.metrics.colour import (
    AANLIB_COLOUR_SCALES,
    COLOUR_BOUND,
    ColourFidelity,
    ColourScale,
    ColourShifts,
    colour_shifts,
    to_lab,
    uptake_mask,
)
from mmif_monai.transforms.color import rgb_to_yiq

PET_SCALE = AANLIB_COLOUR_SCALES["mri_pet"]
PET = SAMPLES_DIR / "mri_pet"
EDGE_MARGIN = 0.4


def _image(*colours: tuple[int, int, int]) -> torch.Tensor:
    """A (3, 1, n) RGB image in [0, 1] of 8-bit colours side by side."""
    return torch.tensor(colours, dtype=torch.float64).T[:, None, :] / 255


def _ciede2000(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    lab = rgb2lab(np.array([a, b], dtype=np.float64) / 255)
    return float(deltaE_ciede2000(lab[0], lab[1]))


# ------------------------------------------------------------------------------------------------------ the measure


def test_identical_images_have_no_colour_shift():
    functional = _image((0, 50, 201), (242, 234, 13), (255, 0, 0), (0, 0, 0))
    shifts = colour_shifts(functional, functional, PET_SCALE)
    assert shifts.delta_e.size == 3  # black carries no uptake colour
    np.testing.assert_array_equal(shifts.delta_e, 0.0)
    assert not shifts.moved.any()


def test_a_known_shift_gives_scikit_image_ciede2000():
    # the issue's yellow -> olive: darker, not another step, but far more than "the same colour"
    shifts = colour_shifts(_image((202, 195, 5)), _image((242, 234, 13)), PET_SCALE)
    np.testing.assert_allclose(shifts.delta_e, [_ciede2000((242, 234, 13), (202, 195, 5))])
    assert shifts.delta_e[0] > COLOUR_BOUND.step_mean and not shifts.moved[0]


def test_blue_pushed_toward_cyan_moves_to_another_step_a_faint_shift_does_not():
    functional = _image((0, 50, 201), (0, 50, 201))
    fused = _image((82, 129, 234), (3, 54, 204))  # the issue's pale cyan; a barely visible lightening
    shifts = colour_shifts(fused, functional, PET_SCALE)
    assert shifts.moved.tolist() == [True, False]
    assert shifts.delta_e[1] < 2.0


def test_uptake_region_is_the_coloured_pixels():
    lab = to_lab(_image((0, 0, 0), (128, 128, 128), (0, 0, 16), (0, 0, 24), (255, 255, 0)))
    assert uptake_mask(lab)[0].tolist() == [False, False, False, True, True]  # C*ab 0, 0, 7, 12, 97


def test_steps_split_the_scale_evenly_from_its_low_end():
    scale = ColourScale("black to red", ((0, 0, 0), (255, 0, 0)), steps=4)
    positions, distances = scale.project(rgb2lab(np.array([[0, 0, 0], [255, 0, 0]], dtype=np.float64) / 255))
    np.testing.assert_allclose(positions, [0.0, scale.length])
    np.testing.assert_allclose(distances, 0.0, atol=1e-9)
    assert scale.step_of(positions).tolist() == [0, 3]
    np.testing.assert_allclose(scale.step_width * 4, scale.length)
    red = scale.step_colours()[:, 0].astype(int)
    assert (np.diff(red) > 0).all() and (scale.step_colours()[:, 1:] == 0).all()


def test_the_issue_colours_sit_on_their_pet_steps():
    lab = rgb2lab(np.array([[0, 50, 201], [242, 234, 13]], dtype=np.float64) / 255)
    positions, distances = PET_SCALE.project(lab)
    assert PET_SCALE.step_of(positions).tolist() == [1, 4]  # dark blue: 2nd of 8 steps; yellow: 5th
    assert distances.max() < 3.0


@pytest.mark.parametrize("pair_type, folder", [("mri_pet", "PET"), ("mri_spect", "SPECT")])
def test_the_aanlib_scales_describe_the_sample_colour_maps(pair_type, folder):
    scale = AANLIB_COLOUR_SCALES[pair_type]
    for path in sorted((SAMPLES_DIR / pair_type / folder).glob("*.png")):
        lab = to_lab(read_slice(path))
        _, distances = scale.project(lab[uptake_mask(lab)])
        assert distances.max() < 1.0, path  # every uptake colour lies on the polyline through the knots


def test_fidelity_per_step_and_the_bound():
    shifts = ColourShifts(
        delta_e=np.array([1.0, 3.0, 4.0, 5.0]), step=np.array([0, 0, 1, 1]), moved=np.array([False] * 4)
    )
    fidelity = ColourFidelity.from_shifts(shifts, steps=3)
    assert (fidelity.overall.pixels, fidelity.overall.mean, fidelity.overall.moved) == (4, 3.25, 0.0)
    assert [s.pixels for s in fidelity.steps] == [2, 2, 0]
    assert fidelity.steps[1].mean == 4.5 and np.isnan(fidelity.steps[2].mean)
    np.testing.assert_allclose(fidelity.steps[1].p95, np.percentile([4.0, 5.0], 95))
    assert fidelity.worst_step_mean == 4.5 and COLOUR_BOUND.met(fidelity)
    one_moved = ColourFidelity.from_shifts(ColourShifts(shifts.delta_e, shifts.step, np.array([True, *[False] * 3])), 3)
    assert not COLOUR_BOUND.met(one_moved)  # a quarter of the pixels moved
    far = ColourFidelity.from_shifts(ColourShifts(np.array([1.0, 3.0, 4.0, 7.0]), shifts.step, shifts.moved), 3)
    assert not COLOUR_BOUND.met(far)  # step 2's mean is 5.5


# --------------------------------------------------------------------------------------------- the luminance limit


def _luminance_batch(seed: int) -> torch.Tensor:
    return torch.rand(2, 1, 24, 20, generator=torch.Generator().manual_seed(seed))


def test_limit_leaves_unmoved_luminance_and_grey_pixels_alone():
    luminance, fused = _luminance_batch(0), _luminance_batch(1)
    coloured = torch.full((2, 2, 24, 20), 0.1)
    torch.testing.assert_close(COLOUR_FIDELITY(luminance, luminance, coloured), luminance)
    torch.testing.assert_close(COLOUR_FIDELITY(fused, luminance, torch.zeros_like(coloured)), fused)
    # a small move passes unchanged: the soft limit has slope 1 at zero
    slight = luminance + 1e-4 * (fused - 0.5)
    torch.testing.assert_close(COLOUR_FIDELITY(slight, luminance, coloured), slight, rtol=0, atol=1e-6)


def test_limit_bounds_the_move_of_coloured_pixels_and_fades_with_chroma():
    limit = LuminanceLimit(level=0.02, detail=0.1)
    luminance, fused = _luminance_batch(2), _luminance_batch(3)
    full = torch.full((2, 2, 24, 20), limit.full_chroma)  # |(I, Q)| = sqrt(2) full_chroma: limited in full
    limited = limit(fused, luminance, full)
    assert (limited - luminance).abs().max() <= limit.level + limit.detail
    assert (fused - luminance).abs().max() > 0.5  # the rule moved it much further
    half = limit(fused, luminance, torch.full_like(full, limit.full_chroma / 2**1.5))  # |(I, Q)| = full / 2
    torch.testing.assert_close(half, (fused + limited) / 2)


def test_limit_refuses_a_setting_that_is_not_positive():
    with pytest.raises(ValueError, match="detail"):
        LuminanceLimit(detail=0.0)


def test_colour_fidelity_brings_a_sample_pair_under_the_bound():
    anatomical, functional = read_slice(PET / "MRI/30061.png")[None], read_slice(PET / "PET/30061.png")[None]
    plain = fuse_batch(max_fusion, anatomical, functional)
    kept = fuse_batch(max_fusion, anatomical, functional, luminance_limit=COLOUR_FIDELITY)
    fidelity = {
        name: ColourFidelity.from_shifts(colour_shifts(image[0], functional[0], PET_SCALE), PET_SCALE.steps)
        for name, image in (("plain", plain), ("kept", kept))
    }
    assert not COLOUR_BOUND.met(fidelity["plain"]) and COLOUR_BOUND.met(fidelity["kept"])
    # the anatomy still shows: the fused image keeps far more of the MRI's edges than the PET has of them
    assert _mri_edges(kept, anatomical) > _mri_edges(functional, anatomical) + EDGE_MARGIN


def _mri_edges(image: torch.Tensor, anatomical: torch.Tensor) -> float:
    """Q^{A/F}: the MRI's edges preserved in the luminance of ``image`` (Qabf with the MRI as both sources)."""
    luminance = rgb_to_yiq(image, channel_dim=1)[:, :1] * 255
    return float(edge_preservation(luminance, anatomical * 255, anatomical * 255)[0])


def test_fuse_with_colour_fidelity_through_the_cli(tmp_path):
    plain, kept = tmp_path / "plain.png", tmp_path / "kept.png"
    pair = (PET / "MRI/30075.png", PET / "PET/30075.png")
    assert fuse_pair(*pair, plain, "--method", "max") == 0
    assert fuse_pair(*pair, kept, "--method", "max", "--colour-fidelity") == 0
    functional = read_slice(pair[1])
    mean = {path.name: colour_shifts(read_slice(path), functional, PET_SCALE).delta_e.mean() for path in (plain, kept)}
    assert mean["kept.png"] < mean["plain.png"] / 2
    assert Image.open(kept).mode == "RGB"


def test_colour_fidelity_is_refused_for_volumes(tmp_path, capsys):
    volume = tmp_path / "ct.nii.gz"
    assert fuse_pair(volume, tmp_path / "pet.nii.gz", tmp_path / "fused.nii.gz", "--colour-fidelity") != 0
    assert "--colour-fidelity applies to 2D slices" in capsys.readouterr().err
