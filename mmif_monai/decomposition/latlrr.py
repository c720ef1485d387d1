"""Latent low-rank representation (LatLRR) and learning its salient-feature projection from image patches.

LatLRR (Liu & Yan, "Latent Low-Rank Representation for Subspace Segmentation and Feature Extraction",
ICCV 2011) models a data matrix ``X`` (one sample per column) as

    X = XZ + LX + E,   min ||Z||_* + ||L||_* + lam * ||E||_1,

where ``XZ`` holds the principal (low-rank) features, ``LX`` the salient features and ``E`` sparse noise.
MDLatLRR (Li, Wu & Kittler, "MDLatLRR: A novel decomposition method for infrared and visible image fusion",
IEEE TIP 2020) learns ``L`` once from vectorised image patches and then extracts the salient part of any
image patch-wise as ``L @ patches``, which avoids solving LatLRR per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["DEFAULT_LAMBDA", "solve_latlrr", "sample_patches", "learn_projection"]

#: Sparsity weight used when learning the projection. Public MDLatLRR projection-learning code
#: (``learning_projection_matrix/train_latent_matrix.m`` in github.com/songxujay/MDLatLRRv2) learns ``L`` from
#: 2000 16x16 patches with ``lambda = 0.4``; the earlier per-image LatLRR fusion of Li & Wu (2018,
#: ``fusion_latlrr.m`` in github.com/hli1221/imagefusion_Infrared_visible_latlrr) used 0.8 on whole images.
DEFAULT_LAMBDA: float = 0.4

#: Called once per ALM iteration with (iteration, mu, residual) -- lets callers log progress.
ProgressCallback = Callable[[int, float, float], None]


def _singular_value_threshold(matrix: np.ndarray, tau: float) -> np.ndarray:
    """Proximal operator of ``tau * ||.||_*``: shrink every singular value by ``tau``."""
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    keep = s > tau
    return (u[:, keep] * (s[keep] - tau)) @ vt[keep]


def _soft_threshold(matrix: np.ndarray, tau: float) -> np.ndarray:
    """Proximal operator of ``tau * ||.||_1``."""
    return np.sign(matrix) * np.maximum(np.abs(matrix) - tau, 0.0)


def solve_latlrr(
    x: np.ndarray,
    lam: float = DEFAULT_LAMBDA,
    *,
    tol: float = 1e-6,
    rho: float = 1.1,
    mu: float = 1e-6,
    max_mu: float = 1e6,
    max_iter: int = 1000,
    callback: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve LatLRR ``min ||Z||_* + ||L||_* + lam ||E||_1  s.t.  X = XZ + LX + E`` by inexact ALM.

    The inexact augmented Lagrange multiplier scheme of Liu & Yan (ICCV 2011): auxiliary variables
    ``J = Z`` and ``S = L`` separate the nuclear norms from the constraint, so each sweep is

    1. ``J, S`` <- singular value thresholding of ``Z + Y2/mu`` and ``L + Y3/mu`` at ``1/mu``;
    2. ``Z`` <- ``(I + X'X)^-1 (X'(X - LX - E + Y1/mu) + J - Y2/mu)``;
    3. ``L`` <- ``((X - XZ - E + Y1/mu) X' + S - Y3/mu) (I + XX')^-1``;
    4. ``E`` <- soft thresholding of ``X - XZ - LX + Y1/mu`` at ``lam/mu``;
    5. multipliers ``Y1, Y2, Y3`` take a step of ``mu`` along the constraint violations and
       ``mu <- min(rho * mu, max_mu)``,

    stopping when every violation (``X - XZ - LX - E``, ``Z - J``, ``L - S``) is below ``tol`` in max-abs.
    The default ``tol``, ``rho``, ``mu`` and ``max_mu`` are those of the authors' reference implementation.

    Why it is fast for ``n >> d``: with the thin SVD ``X = U diag(s) V'`` (``V`` is ``n x r``, ``r = rank X``),
    step 2 maps ``range(V)`` into itself and steps 1 and 5 keep column spaces, so starting from zero every
    ``n x n`` iterate (``Z``, ``J``, ``Y2``) stays of the form ``V @ M`` with ``M`` of size ``r x n``. The
    iteration is run on those ``M`` -- the SVD of step 1 is then ``r x n`` instead of ``n x n`` and the inverse
    of step 2 is the diagonal ``1 / (1 + s**2)`` -- which is the same algorithm in exact arithmetic.

    Args:
        x: data matrix ``(d, n)``, one sample per column.
        lam: weight of the sparse-noise term.
        tol: stopping tolerance on the max-abs constraint violation.
        rho: growth factor of the penalty ``mu`` per iteration.
        mu: initial penalty.
        max_mu: cap on the penalty.
        max_iter: iteration limit; a :class:`RuntimeWarning` is issued if it is reached before ``tol``.
        callback: optional ``callback(iteration, mu, residual)`` called after every iteration.

    Returns:
        ``(Z, L, E)`` with shapes ``(n, n)``, ``(d, d)`` and ``(d, n)``, float64.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2D (features, samples) matrix, got shape {x.shape}")
    d, n = x.shape
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(d, n) * np.finfo(np.float64).eps)) if s.size and s[0] > 0 else 0
    u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    v = vt.T
    us = u * s  # X = us @ vt, so XZ = us @ Zr for Z = v @ Zr
    z_scale = 1.0 / (1.0 + s**2)
    inv_b = np.linalg.inv(np.eye(d) + x @ x.T)

    # n x n iterates in reduced form: Z = v @ z_r, J = v @ j_r, Y2 = v @ y2_r.
    z_r = np.zeros((rank, n))
    y2_r = np.zeros((rank, n))
    lat = np.zeros((d, d))
    e = np.zeros((d, n))
    y1 = np.zeros((d, n))
    y3 = np.zeros((d, d))

    residual = np.inf
    for iteration in range(1, max_iter + 1):
        j_r = _singular_value_threshold(z_r + y2_r / mu, 1.0 / mu)
        s_aux = _singular_value_threshold(lat + y3 / mu, 1.0 / mu)

        # X'(...) = v @ (s * u'(...)); (I + X'X)^-1 acts on range(v) as the diagonal z_scale.
        z_r = z_scale[:, None] * ((s[:, None] * (u.T @ (x - lat @ x - e + y1 / mu))) + j_r - y2_r / mu)
        xz = us @ z_r
        lat = ((x - xz - e + y1 / mu) @ x.T + s_aux - y3 / mu) @ inv_b

        data_residual = x - xz - lat @ x
        e = _soft_threshold(data_residual + y1 / mu, lam / mu)

        violation_x = data_residual - e
        violation_z = z_r - j_r
        violation_l = lat - s_aux
        residual = max(np.abs(violation_x).max(), np.abs(v @ violation_z).max(), np.abs(violation_l).max())
        if callback is not None:
            callback(iteration, mu, float(residual))
        if residual < tol:
            break
        y1 += mu * violation_x
        y2_r += mu * violation_z
        y3 += mu * violation_l
        mu = min(max_mu, mu * rho)
    else:
        warnings.warn(
            f"LatLRR did not reach tol={tol:g} in {max_iter} iterations (residual {residual:.3e})",
            RuntimeWarning,
            stacklevel=2,
        )
    return v @ z_r, lat, e


def sample_patches(
    images: Sequence[np.ndarray],
    patch_size: int = 16,
    n_patches: int = 2000,
    seed: int = 0,
    background_level: float = 0.05,
) -> np.ndarray:
    """Vectorised square patches drawn at random positions from a list of 2D images.

    Each patch is flattened row-major (pixel ``(r, c)`` at ``r * patch_size + c``), the order of
    :func:`torch.nn.functional.unfold`, so a projection learned here applies directly to unfolded tensors.

    Medical slices are mostly black background; a patch whose mean intensity is below ``background_level``
    is (nearly) all background, carries no structure for ``L`` to learn, and is redrawn.

    Args:
        images: 2D float arrays scaled to [0, 1], each at least ``patch_size`` on both sides.
        patch_size: side of the square patches.
        n_patches: number of patches to return.
        seed: seed of the random positions.
        background_level: patches with a lower mean intensity are skipped.

    Returns:
        ``(patch_size**2, n_patches)`` float64 matrix, one patch per column.
    """
    arrays = [np.asarray(image, dtype=np.float64) for image in images]
    if not arrays:
        raise ValueError("no images to sample patches from")
    for array in arrays:
        if array.ndim != 2 or min(array.shape) < patch_size:
            raise ValueError(f"images must be 2D and at least {patch_size} px per side, got shape {array.shape}")

    rng = np.random.default_rng(seed)
    patches: list[np.ndarray] = []
    # Bound the redraws so an all-background input fails instead of looping forever.
    max_draws = 100 * n_patches
    draws = 0
    while len(patches) < n_patches and draws < max_draws:
        draws += 1
        image = arrays[rng.integers(len(arrays))]
        row = rng.integers(image.shape[0] - patch_size + 1)
        col = rng.integers(image.shape[1] - patch_size + 1)
        patch = image[row : row + patch_size, col : col + patch_size]
        if patch.mean() >= background_level:
            patches.append(patch.reshape(-1))
    if len(patches) < n_patches:
        raise ValueError(
            f"found only {len(patches)} of {n_patches} patches above background level {background_level} "
            f"in {max_draws} draws"
        )
    return np.stack(patches, axis=1)


def learn_projection(
    images: Sequence[np.ndarray],
    patch_size: int = 16,
    n_patches: int = 2000,
    lam: float = DEFAULT_LAMBDA,
    seed: int = 0,
    max_iter: int = 1000,
    callback: ProgressCallback | None = None,
) -> torch.Tensor:
    """Learn the MDLatLRR salient-feature projection ``L`` from random patches of ``images``.

    Args:
        images: 2D float arrays scaled to [0, 1].
        patch_size: side of the square patches; ``L`` is ``patch_size**2`` square.
        n_patches: number of training patches; an ALM iteration costs ``O(d**2 n + d n**2)`` for ``d = patch_size**2``.
        lam: LatLRR sparsity weight.
        seed: seed of the patch positions.
        max_iter: ALM iteration limit.
        callback: progress callback passed to :func:`solve_latlrr`.

    Returns:
        ``L`` as a float32 tensor of shape ``(patch_size**2, patch_size**2)``.
    """
    patches = sample_patches(images, patch_size=patch_size, n_patches=n_patches, seed=seed)
    _, projection, _ = solve_latlrr(patches, lam=lam, max_iter=max_iter, callback=callback)
    return torch.from_numpy(projection).to(torch.float32)
