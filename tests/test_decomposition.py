"""Tests of the LatLRR solver, patch sampling and the learned-projection decomposition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mmif_monai.decomposition.latlrr import learn_projection, sample_patches, solve_latlrr
from mmif_monai.decomposition.projection import (
    LatLRRDecomposition,
    default_projection_path,
    load_projection,
)
from oracles import decompose_explicit


def _svt(matrix: np.ndarray, tau: float) -> np.ndarray:
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return (u * np.maximum(s - tau, 0.0)) @ vt


def _textbook_latlrr(x: np.ndarray, lam: float, iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Liu & Yan's inexact ALM written out with dense n x n matrices, as the reference for the reduced form."""
    d, n = x.shape
    mu, rho, max_mu = 1e-6, 1.1, 1e6
    z, j, y2 = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    lat, s, y3 = np.zeros((d, d)), np.zeros((d, d)), np.zeros((d, d))
    e, y1 = np.zeros((d, n)), np.zeros((d, n))
    inv_a = np.linalg.inv(x.T @ x + np.eye(n))
    inv_b = np.linalg.inv(x @ x.T + np.eye(d))
    for _ in range(iterations):
        j = _svt(z + y2 / mu, 1 / mu)
        s = _svt(lat + y3 / mu, 1 / mu)
        z = inv_a @ (x.T @ x - x.T @ lat @ x - x.T @ e + j + (x.T @ y1 - y2) / mu)
        lat = ((x - x @ z - e) @ x.T + s + (y1 @ x.T - y3) / mu) @ inv_b
        temp = x - x @ z - lat @ x + y1 / mu
        e = np.maximum(0, temp - lam / mu) + np.minimum(0, temp + lam / mu)
        y1 += mu * (x - x @ z - lat @ x - e)
        y2 += mu * (z - j)
        y3 += mu * (lat - s)
        mu = min(max_mu, mu * rho)
    return z, lat, e


@pytest.fixture
def small_data() -> np.ndarray:
    rng = np.random.default_rng(3)
    # rank-deficient on purpose: the solver's reduced form must cope with rank X < d
    x = rng.random((12, 30))
    x[:, 7] = x[:, 2]
    x[4] = x[5]
    return x


def test_solver_converges_to_the_constraint(small_data):
    iterations = []
    z, lat, e = solve_latlrr(small_data, lam=0.4, callback=lambda i, mu, r: iterations.append((i, r)))
    assert z.shape == (30, 30) and lat.shape == (12, 12) and e.shape == (12, 30)
    assert iterations[-1][1] < 1e-6
    np.testing.assert_allclose(small_data @ z + lat @ small_data + e, small_data, atol=1e-5)
    # the salient and principal parts are genuine: neither term is zero
    assert np.abs(lat).max() > 1e-3 and np.abs(z).max() > 1e-3


def test_solver_matches_dense_textbook_iteration(small_data):
    steps = 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z, lat, e = solve_latlrr(small_data, lam=0.4, max_iter=steps, tol=0.0)
    z_ref, lat_ref, e_ref = _textbook_latlrr(small_data, lam=0.4, iterations=steps)
    np.testing.assert_allclose(z, z_ref, atol=1e-8)
    np.testing.assert_allclose(lat, lat_ref, atol=1e-8)
    np.testing.assert_allclose(e, e_ref, atol=1e-8)


def test_solver_warns_when_not_converged(small_data):
    calls = []
    with pytest.warns(RuntimeWarning, match="did not reach"):
        solve_latlrr(small_data, max_iter=3, callback=lambda i, mu, r: calls.append(i))
    assert calls == [1, 2, 3]


def test_solver_rejects_non_matrix():
    with pytest.raises(ValueError, match="2D"):
        solve_latlrr(np.zeros(5))


def test_sample_patches_are_row_major_image_patches():
    height, width = 40, 50
    image = np.arange(height * width, dtype=np.float64).reshape(height, width) / (height * width) + 0.1
    patches = sample_patches([image], patch_size=16, n_patches=25, seed=1)
    assert patches.shape == (256, 25)
    for column in patches.T:
        top_left = int(round((column[0] - 0.1) * height * width))
        row, col = divmod(top_left, width)
        np.testing.assert_array_equal(column, image[row : row + 16, col : col + 16].reshape(-1))


def test_sample_patches_seeded_and_skips_background():
    image = np.zeros((64, 64))
    image[:, 32:] = 1.0  # left half empty
    first = sample_patches([image], patch_size=16, n_patches=50, seed=7)
    np.testing.assert_array_equal(first, sample_patches([image], patch_size=16, n_patches=50, seed=7))
    assert not np.array_equal(first, sample_patches([image], patch_size=16, n_patches=50, seed=8))
    assert first.mean(axis=0).min() >= 0.05


def test_sample_patches_fails_on_blank_or_small_images():
    with pytest.raises(ValueError, match="background"):
        sample_patches([np.zeros((32, 32))], n_patches=5)
    with pytest.raises(ValueError, match="at least 16"):
        sample_patches([np.ones((10, 40))])


def test_learn_projection_small():
    rng = np.random.default_rng(0)
    images = [rng.random((20, 20)) for _ in range(3)]
    projection = learn_projection(images, patch_size=4, n_patches=40, seed=0)
    assert projection.shape == (16, 16) and projection.dtype == torch.float32
    assert torch.isfinite(projection).all() and projection.abs().max() > 0


@pytest.fixture
def random_projection() -> torch.Tensor:
    return torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) / 16


@pytest.mark.parametrize("shape", [(2, 1, 40, 52), (1, 1, 64, 64), (1, 1, 16, 16), (1, 2, 17, 30)])
def test_convolution_matches_explicit_fold(shape, random_projection):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    low_rank, salient = LatLRRDecomposition(random_projection)(x)
    low_rank_ref, salient_ref = decompose_explicit(x, random_projection)
    torch.testing.assert_close(salient, salient_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(low_rank, low_rank_ref, atol=1e-5, rtol=0)


def test_convolution_matches_explicit_fold_float64_and_patch_8():
    # the module keeps its projection in float32; use float32-representable values for a float64 comparison
    projection = torch.randn(64, 64, generator=torch.Generator().manual_seed(2)).double()
    x = torch.rand(1, 1, 23, 19, dtype=torch.float64)
    _, salient = LatLRRDecomposition(projection, patch_size=8)(x)
    assert salient.dtype == torch.float64
    torch.testing.assert_close(salient, decompose_explicit(x, projection)[1], atol=1e-10, rtol=0)


def test_parts_add_up_to_the_input(random_projection):
    x = torch.rand(3, 1, 40, 52)
    low_rank, salient = LatLRRDecomposition(random_projection)(x)
    assert low_rank.shape == salient.shape == x.shape
    torch.testing.assert_close(low_rank + salient, x, atol=1e-6, rtol=0)


def test_zero_and_identity_projections():
    x = torch.rand(2, 1, 20, 24)
    low_rank, salient = LatLRRDecomposition()(x)
    assert torch.equal(salient, torch.zeros_like(x)) and torch.equal(low_rank, x)
    # every patch projected onto itself: the average of identical copies is the image
    low_rank, salient = LatLRRDecomposition(torch.eye(256))(x)
    torch.testing.assert_close(salient, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(low_rank, torch.zeros_like(x), atol=1e-6, rtol=0)


def test_state_dict_holds_only_the_projection_and_loading_takes_effect(random_projection):
    module = LatLRRDecomposition()
    assert list(module.state_dict()) == ["projection"]
    module.load_state_dict({"projection": random_projection})
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(module(x)[1], decompose_explicit(x, random_projection)[1], atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript(random_projection):
    module = LatLRRDecomposition(random_projection)
    scripted = torch.jit.script(module)
    x = torch.rand(2, 1, 40, 52)
    for eager, script in zip(module(x), scripted(x)):
        torch.testing.assert_close(script, eager, atol=0, rtol=0)


def test_input_validation(random_projection):
    module = LatLRRDecomposition(random_projection)
    with pytest.raises(ValueError, match="at least 16"):
        module(torch.rand(1, 1, 15, 40))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        module(torch.rand(1, 40, 40))
    with pytest.raises(ValueError, match="patch_size"):
        LatLRRDecomposition(random_projection, patch_size=8)
    with pytest.raises(ValueError, match="square patch"):
        LatLRRDecomposition(torch.zeros(10, 10))


def test_load_projection_roundtrip_and_missing(tmp_path, random_projection):
    as_dict = tmp_path / "dict.pt"
    torch.save({"projection": random_projection.double(), "patch_size": 16}, as_dict)
    loaded = load_projection(as_dict)
    assert loaded.dtype == torch.float32
    torch.testing.assert_close(loaded, random_projection)
    bare = tmp_path / "bare.pt"
    torch.save(random_projection, bare)
    torch.testing.assert_close(load_projection(bare), random_projection)
    with pytest.raises(FileNotFoundError, match="learn_latlrr_projection"):
        load_projection(tmp_path / "missing.pt")


def test_shipped_projection():
    path = default_projection_path()
    assert path.parts[-4:] == ("bundles", "mmif_net", "models", "latlrr_projection.pt")
    content = torch.load(path, weights_only=True)
    assert content["patch_size"] == 16 and content["residual"] < 1e-5
    module = LatLRRDecomposition(load_projection())
    # a learned L barely responds to flat regions: the salient part of a constant image is tiny
    _, salient = module(torch.full((1, 1, 32, 32), 0.5))
    assert salient.abs().max() < 0.05
