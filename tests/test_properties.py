"""Property-based tests (hypothesis) of the transforms, the colour fusion pipeline, the classical fusion rules
and the fusion metrics.

They add to what tests/test_transforms.py and tests/test_metrics.py already check by property (YIQ round trip
and ranges of single (3, H, W) float64 images, the [0, 1] range of ModalityNormalize, bounds and source swapping
of the metrics on smooth random images): batched and float32 colour conversion, the pipeline's shapes, ranges
and identities, monotonicity, invertibility and unit-independence of the normalisation, swapping sources of the
classical rules, and for the metrics degenerate images (constant, two-level, noise), batch independence and
invariance to rearranging the pixels of all three images alike.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from monai.data import MetaTensor
from scipy.ndimage import gaussian_filter

import mmif_monai.metrics as M
from mmif_monai.fusion.classical import CLASSICAL_METHODS
from mmif_monai.fusion.pipeline import fuse_batch
from mmif_monai.transforms import ModalityNormalize, rgb_to_yiq, split_luminance, yiq_to_rgb

unit_floats = st.floats(0.0, 1.0, width=32, allow_nan=False)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Hundreds of tiny tensors: a second intra-op thread only adds hand-over cost, and on a busy shared CPU
    its spin-waiting makes them up to 80 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------- colour, pipeline


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float32,
        array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=5).map(lambda s: (s[0], 3, *s[2:])),
        elements=unit_floats,
    )
)
def test_yiq_round_trip_on_float32_batches_with_channel_dim_1(rgb):
    yiq = rgb_to_yiq(torch.from_numpy(rgb), channel_dim=1)
    assert yiq.shape == rgb.shape and yiq.dtype == torch.float32
    torch.testing.assert_close(yiq_to_rgb(yiq, channel_dim=1), torch.from_numpy(rgb), rtol=0, atol=1e-5)
    # grey pixels (R = G = B) carry no chrominance, and Y is their grey value
    grey = torch.from_numpy(rgb[:, :1]).expand(-1, 3, -1, -1)
    y, iq = split_luminance(rgb_to_yiq(grey, channel_dim=1), channel_dim=1)
    torch.testing.assert_close(y, grey[:, :1], rtol=0, atol=1e-6)
    assert iq.abs().max() <= 1e-6


batch_shapes = st.tuples(st.integers(1, 3), st.integers(2, 9), st.integers(2, 9))


@st.composite
def pipeline_inputs(draw):
    n, h, w = draw(batch_shapes)
    channels = draw(st.sampled_from([1, 3]))
    anatomical = draw(arrays(np.float32, (n, 1, h, w), elements=unit_floats))
    functional = draw(arrays(np.float32, (n, channels, h, w), elements=unit_floats))
    return torch.from_numpy(anatomical), torch.from_numpy(functional)


@settings(max_examples=60, deadline=None)
@given(pipeline_inputs(), st.floats(-3, 3), st.floats(-2, 2))
def test_pipeline_shapes_ranges_and_identities(inputs, gain, offset):
    anatomical, functional = inputs
    # whatever a fusion rule returns, even outside [0, 1], the pipeline keeps the functional image's layout
    wild = fuse_batch(lambda a, y: gain * a + offset * y, anatomical, functional)
    assert wild.shape == functional.shape and wild.min() >= 0 and wild.max() <= 1
    # a rule that returns the functional luminance gives the functional image back (colour kept through YIQ)
    torch.testing.assert_close(fuse_batch(lambda a, y: y, anatomical, functional), functional, rtol=0, atol=1e-5)
    if functional.shape[1] == 1:
        torch.testing.assert_close(fuse_batch(lambda a, y: a, anatomical, functional), anatomical)


@settings(max_examples=40, deadline=None)
@given(pipeline_inputs(), st.integers(0, 8), st.integers(0, 8), st.floats(0.01, 0.5))
def test_pipeline_keeps_the_shared_background_empty(inputs, rows, cols, haze):
    anatomical, functional = inputs
    anatomical[..., :rows, :cols] = 0.0
    functional[..., :rows, :cols] = 0.0
    empty = (anatomical == 0) & (functional == 0).all(dim=1, keepdim=True)

    def hazy(a, y):  # a rule that puts signal everywhere, like a convolutional decoder's halo
        return 0.5 * (a + y) + haze

    kept = fuse_batch(hazy, anatomical, functional)
    unmasked = fuse_batch(hazy, anatomical, functional, keep_background=False)
    assert (kept * empty).abs().max() == 0
    assert (unmasked * empty).sum() > 0 or not empty.any()
    torch.testing.assert_close(kept * ~empty, unmasked * ~empty)


# ---------------------------------------------------------------------------------------------------- normalisation

finite_images = arrays(
    np.float32,
    array_shapes(min_dims=3, max_dims=3, min_side=2, max_side=6).map(lambda s: (1, *s[1:])),
    elements=st.floats(-3000, 3000, width=32, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(finite_images, st.sampled_from(["CT", "MR", "PET"]))
def test_normalisation_keeps_order_and_inverts_inside_its_window(img, modality):
    transform = ModalityNormalize(modality)
    source = MetaTensor(torch.from_numpy(img))
    out = transform(source)
    assert out.shape == source.shape
    order = torch.argsort(source.flatten(), stable=True)
    assert bool((out.flatten()[order].diff() >= 0).all())  # brighter in, never darker out
    inside = (out > 0) & (out < 1)  # not clipped: the inverse gives the input back
    back = transform.inverse(out)
    torch.testing.assert_close(back[inside], source.as_tensor()[inside], rtol=1e-4, atol=1e-2)


@settings(max_examples=60, deadline=None)
@given(finite_images, st.floats(1e-3, 1e3), st.floats(-1e3, 1e3))
# contrast of float32 denormals only: a shift of 1 erases it in float64 (a fresh-clone run found it); such a window is
# below float resolution, and the rule takes the image for constant in both units
@example(img=np.array([[[0.0, 1e-45], [1e-45, 1e-45]]], dtype=np.float32), scale=1.0, shift=1.0)
def test_percentile_rule_does_not_depend_on_the_unit(img, scale, shift):
    """MR's rule (and read_slice's for 16-bit and unlabelled data) gives the same image in any affine unit, as long
    as the change of unit keeps the image's contrast above float64 resolution (a shift can round contrast away)."""
    source = torch.from_numpy(img).double()
    span, tiny = float(source.max() - source.min()), torch.finfo(torch.float32).tiny
    spread, magnitude = span * scale, float((source * scale + shift).abs().max())
    # either contrast above resolution in both units, or none in either (constant, or denormals only)
    assume(span == 0 or (span < tiny and spread < tiny) or (span >= tiny and spread > 1e-9 * magnitude))
    rule = ModalityNormalize("MR")
    base = rule(source)
    rescaled = rule(source * scale + shift)
    torch.testing.assert_close(rescaled, base, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- classical fusion


@st.composite
def noise_pairs(draw):
    """Two (1, 1, H, W) float64 images of smoothed noise in [0, 1].

    The max-abs rules break an exact magnitude tie between the two sources' coefficients towards the first
    image. In float32 such ties do occur now and then (a CI run met one in a Laplacian band-pass level: equal
    magnitudes, opposite signs); in float64 their chance is negligible, so swapping the sources must not
    change the result."""
    seed, h, w = draw(st.integers(0, 2**32 - 1)), draw(st.integers(16, 40)), draw(st.integers(16, 40))
    sigma = draw(st.sampled_from([0.0, 1.0, 2.5]))
    rng = np.random.default_rng(seed)
    a, b = (gaussian_filter(rng.random((h, w)), sigma) if sigma else rng.random((h, w)) for _ in range(2))
    return torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]


@pytest.mark.parametrize("method", list(CLASSICAL_METHODS))
# images under 24 px are too small for three db2 levels: PyWavelets says every coefficient feels the boundary, and the
# rule must still not care which source comes first
@pytest.mark.filterwarnings("ignore:Level value of 3 is too high:UserWarning:pywt")
@settings(max_examples=15, deadline=None)
@given(pair=noise_pairs())
def test_classical_rules_do_not_care_which_source_comes_first(method, pair):
    a, b = pair
    fuse = CLASSICAL_METHODS[method]
    torch.testing.assert_close(fuse(a, b), fuse(b, a), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------- metrics

IMAGE_KINDS = ("noise", "smooth", "two-level", "constant", "black")


def _image(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """An 8-bit grey image (float64 values 0..255) of a given kind."""
    if kind == "noise":
        return rng.integers(0, 256, shape).astype(np.float64)
    if kind == "smooth":
        x = gaussian_filter(rng.random(shape), 2.0)
        return np.round((x - x.min()) / (x.max() - x.min()) * 255)
    if kind == "two-level":
        levels = rng.choice(256, 2, replace=False)
        return np.where(rng.random(shape) < 0.5, *levels).astype(np.float64)
    if kind == "constant":
        return np.full(shape, float(rng.integers(1, 256)))
    return np.zeros(shape)


@st.composite
def triplets(draw, batch: int = 1):
    """(fused, a, b) batches (N, 1, H, W) of independently drawn kinds; H, W >= 41 for VIF's four scales."""
    shape = (draw(st.integers(41, 48)), draw(st.integers(41, 48)))
    kinds = [[draw(st.sampled_from(IMAGE_KINDS)) for _ in range(3)] for _ in range(batch)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    stacks = [np.stack([_image(k[role], rng, shape) for k in kinds]) for role in range(3)]
    return tuple(torch.from_numpy(s)[:, None] for s in stacks), kinds


def _constant(x: torch.Tensor) -> bool:
    return bool(x.max() == x.min())


@settings(max_examples=60, deadline=None)
@given(triplets())
def test_metric_bounds_hold_and_nan_only_for_flat_images(drawn):
    (f, a, b), _ = drawn
    v = {name: float(t[0]) for name, t in M.batched_metrics(f, a, b).items()}
    assert 0 <= v["EN"] <= 8 and v["SD"] >= 0 and v["SF"] >= 0 and v["AG"] >= 0
    assert -1e-9 <= v["MI"] <= 2 * v["EN"] + 1e-9  # I(F; S) <= H(F), for each of the two sources
    assert v["PSNR"] > 0
    assert -2 - 1e-9 <= v["SSIM"] <= 2 + 1e-9
    for name, low, high in (("CC", -1, 1), ("SCD", -2, 2), ("Qabf", 0, 1), ("VIF", 0, math.inf)):
        if math.isnan(v[name]):  # documented: undefined where an image (or difference image) is flat
            assert any(_constant(x) for x in (f, a, b, f - a, f - b)), (name, drawn[1])
        else:
            assert low - 1e-9 <= v[name] <= high + 1e-9, (name, v[name])


@settings(max_examples=15, deadline=None)
@given(triplets(batch=3))
def test_each_image_of_a_batch_is_scored_alone(drawn):
    (f, a, b), _ = drawn
    together = M.batched_metrics(f, a, b)
    for i in range(f.shape[0]):
        alone = M.batched_metrics(f[i : i + 1], a[i : i + 1], b[i : i + 1])
        for name, values in together.items():
            torch.testing.assert_close(values[i : i + 1], alone[name], rtol=1e-10, atol=1e-10, equal_nan=True, msg=name)


# Pixel statistics (histograms, moments, correlations) ignore where pixels are; the neighbourhood metrics SF,
# AG and SSIM ignore the direction of the axes. VIF (its 2x sub-sampling keeps even rows and columns, so a
# flip changes which pixels survive) and Qabf (orientation atan(sy/sx) with pi/2 where sx = 0, so a mirrored
# edge is not always the same angle apart) are not exactly invariant by their definitions and are left out.
PIXEL_STATISTICS = ["EN", "SD", "MI", "SCD", "PSNR", "CC"]
AXIS_SYMMETRIC = [*PIXEL_STATISTICS, "SF", "AG", "SSIM"]
REARRANGEMENTS = {
    "mirror left-right": lambda x: x.flip(-1),
    "mirror up-down": lambda x: x.flip(-2),
    "transpose": lambda x: x.transpose(-2, -1),
    "rotate 90": lambda x: x.rot90(1, (-2, -1)),
}


@settings(max_examples=30, deadline=None)
@given(triplets(), st.sampled_from(sorted(REARRANGEMENTS)), st.integers(0, 2**32 - 1))
def test_metrics_ignore_a_rearrangement_of_all_three_images(drawn, rearrangement, seed):
    (f, a, b), _ = drawn
    base = M.batched_metrics(f, a, b, names=AXIS_SYMMETRIC)
    move = REARRANGEMENTS[rearrangement]
    moved = M.batched_metrics(move(f), move(a), move(b), names=AXIS_SYMMETRIC)
    for name in AXIS_SYMMETRIC:
        torch.testing.assert_close(moved[name], base[name], rtol=1e-9, atol=1e-12, equal_nan=True, msg=name)
    # an arbitrary shuffle of the pixels, the same for all three images
    order = torch.from_numpy(np.random.default_rng(seed).permutation(f[0, 0].numel()))
    shuffle = lambda x: x.flatten(-2)[..., order].reshape(x.shape)  # noqa: E731
    shuffled = M.batched_metrics(shuffle(f), shuffle(a), shuffle(b), names=PIXEL_STATISTICS)
    for name in PIXEL_STATISTICS:
        torch.testing.assert_close(shuffled[name], base[name], rtol=1e-9, atol=1e-12, equal_nan=True, msg=name)


@settings(max_examples=30, deadline=None)
@given(triplets())
def test_fusing_an_image_with_itself(drawn):
    (x, _, _), _ = drawn
    v = M.batched_metrics(x, x, x)
    assert float(v["MI"][0]) == pytest.approx(2 * float(v["EN"][0]), abs=1e-9)
    assert float(v["SSIM"][0]) == pytest.approx(2.0, abs=1e-9)
    assert float(v["PSNR"][0]) == math.inf
    if not _constant(x):
        assert float(v["CC"][0]) == pytest.approx(1.0, abs=1e-9)


def test_a_window_below_float_resolution_counts_as_constant():
    rule = ModalityNormalize("MR")
    denormal = torch.tensor([[[0.0, 1e-45], [1e-45, 1e-45]]])
    ulp = float(np.nextafter(np.float32(1000), np.float32(2000)))
    rounding = torch.tensor([[[1000.0, 1000.0], [1000.0, ulp]]])  # one unit in the last place: rounding noise
    for image in (denormal, denormal.double(), rounding):
        assert bool((rule(image) == 0).all()), image
    small = torch.tensor([[[0.0, 1e-3], [1e-3, 1e-3]]])  # small but real contrast is stretched
    assert float(rule(small).max()) == 1.0
