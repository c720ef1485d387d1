"""Tests of the classical fusion baselines."""

from __future__ import annotations

import pytest
import torch

from mmif_monai.decomposition.projection import LatLRRDecomposition, load_projection
from mmif_monai.fusion.classical import (
    CLASSICAL_METHODS,
    average_fusion,
    dwt_fusion,
    laplacian_pyramid_fusion,
    latlrr_fusion,
    max_fusion,
)


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def decomposition() -> LatLRRDecomposition:
    return LatLRRDecomposition(load_projection())


def test_registry_names():
    assert set(CLASSICAL_METHODS) == {"average", "max", "laplacian", "dwt", "latlrr"}


@pytest.mark.parametrize("name", ["average", "max", "laplacian", "dwt"])
@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 65, 70)])
def test_fusing_an_image_with_itself_returns_it(name, shape):
    x = _images(*shape)
    torch.testing.assert_close(CLASSICAL_METHODS[name](x, x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("levels", [1, 3, 6])
def test_laplacian_pyramid_reconstructs_odd_sizes(levels):
    x = _images(1, 1, 37, 70)
    torch.testing.assert_close(laplacian_pyramid_fusion(x, x, levels=levels), x, atol=1e-5, rtol=0)


def test_latlrr_self_fusion(decomposition):
    x = _images(2, 1, 48, 40)
    # max-abs keeps one copy of the salient part: the image itself
    torch.testing.assert_close(latlrr_fusion(x, x, decomposition, "max_abs"), x, atol=1e-5, rtol=0)
    # Li & Wu's sum rule keeps both copies: the detail is doubled
    _, salient = decomposition(x)
    expected = (x + salient).clamp(0, 1)
    torch.testing.assert_close(latlrr_fusion(x, x, decomposition, "sum"), expected, atol=1e-5, rtol=0)
    assert (expected - x).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["average", "laplacian", "dwt"])
def test_constants_average(name):
    a = torch.full((2, 1, 33, 40), 0.2)
    b = torch.full((2, 1, 33, 40), 0.6)
    torch.testing.assert_close(CLASSICAL_METHODS[name](a, b), torch.full_like(a, 0.4), atol=1e-5, rtol=0)


def test_max_picks_the_pixel_maximum():
    a, b = _images(2, 1, 20, 30, seed=1), _images(2, 1, 20, 30, seed=2)
    fused = max_fusion(a, b)
    assert torch.equal(fused, torch.where(a >= b, a, b))
    assert torch.equal(max_fusion(a, b), max_fusion(b, a))


def test_average_is_the_mean():
    a, b = _images(1, 1, 20, 30, seed=1), _images(1, 1, 20, 30, seed=2)
    torch.testing.assert_close(average_fusion(a, b), (a + b) / 2)


@pytest.mark.parametrize("fuse", [laplacian_pyramid_fusion, dwt_fusion])
def test_multiscale_rules_keep_the_textured_image_detail(fuse):
    # a textured image fused with a flat one of the same mean: max-abs keeps the texture, the base is shared
    rows = torch.arange(64).reshape(-1, 1)
    cols = torch.arange(64).reshape(1, -1)
    texture = 0.5 + 0.3 * torch.sin(rows * 0.9) * torch.cos(cols * 1.3)
    textured = texture.reshape(1, 1, 64, 64).float()
    flat = torch.full_like(textured, float(textured.mean()))
    fused = fuse(textured, flat)
    error = (fused - textured).abs().mean()
    assert error < 0.1 * (average_fusion(textured, flat) - textured).abs().mean()


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_dwt_odd_size_keeps_shape_dtype_device(wavelet):
    a, b = _images(2, 1, 65, 70, seed=1), _images(2, 1, 65, 70, seed=2)
    fused = dwt_fusion(a, b, wavelet=wavelet, level=3)
    assert fused.shape == (2, 1, 65, 70) and fused.dtype == torch.float32 and fused.device == a.device
    assert dwt_fusion(a.double(), b.double(), wavelet=wavelet).dtype == torch.float64


@pytest.mark.parametrize("name", sorted(CLASSICAL_METHODS))
def test_batched_equals_per_image_and_in_range(name):
    a, b = _images(3, 1, 40, 52, seed=3), _images(3, 1, 40, 52, seed=4)
    fused = CLASSICAL_METHODS[name](a, b)
    assert fused.shape == a.shape
    assert fused.min() >= 0 and fused.max() <= 1
    for i in range(3):
        torch.testing.assert_close(fused[i : i + 1], CLASSICAL_METHODS[name](a[i : i + 1], b[i : i + 1]))


def test_latlrr_registry_uses_the_sum_rule_with_the_shipped_projection(decomposition):
    a, b = _images(1, 1, 40, 52, seed=5), _images(1, 1, 40, 52, seed=6)
    torch.testing.assert_close(CLASSICAL_METHODS["latlrr"](a, b), latlrr_fusion(a, b, decomposition, "sum"))


def test_input_validation(decomposition):
    a = _images(1, 1, 32, 32)
    with pytest.raises(ValueError, match="same shape"):
        average_fusion(a, _images(1, 1, 32, 31))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        max_fusion(a[0], a[0])
    with pytest.raises(ValueError, match="levels"):
        laplacian_pyramid_fusion(a, a, levels=0)
    with pytest.raises(ValueError, match="salient_rule"):
        latlrr_fusion(a, a, decomposition, "mean")
