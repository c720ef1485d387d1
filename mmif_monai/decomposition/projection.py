"""Applying a learned LatLRR projection to images: ``salient = fold(L @ unfold(x))``, ``low_rank = x - salient``.

With stride-1 patches and overlap averaging, patch-wise projection is a linear shift-invariant operator.
Pixel ``p`` lies in ``P = patch_size**2`` patches; in the patch whose offset ``o`` covers ``p``, the projected
value is ``sum_o' L[o, o'] x[p - o + o']``. Averaging over the ``P`` patches and writing ``u = o' - o``:

    salient(p) = sum_u K[u] x[p + u],   K[u] = (1 / P) * sum_{o : o and o + u inside the patch} L[o, o + u],

a single ``(2 * patch_size - 1)``-square convolution (961 multiply-adds per pixel for 16x16 patches instead
of the 65,536 of the explicit form). Reflect-padding the image by ``patch_size - 1`` gives every pixel all
``P`` covering patches, so the identity holds at the border too.

The 31x31 cross-correlation is evaluated by FFT (product of the image spectrum with the conjugate kernel
spectrum): exact up to float rounding and about 14 times faster on the CPU than the direct convolution, whose
single input channel leaves the convolution kernels little to vectorise (docs/benchmarks.md). An ONNX export
(:mod:`mmif_monai.networks.export`) computes the same correlation as that direct convolution.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from mmif_monai.io.paths import BUNDLE_DIR

__all__ = [
    "DEFAULT_PATCH_SIZE",
    "LatLRRDecomposition",
    "default_projection_path",
    "load_projection",
]

DEFAULT_PATCH_SIZE: int = 16


def _kernel_gather_index(patch_size: int) -> torch.Tensor:
    """Index table turning a flattened projection into the flattened convolution kernel by gather-and-sum.

    Row ``k`` of the ``((2p-1)**2, p**2)`` table lists the flat indices ``o * p**2 + o'`` of the projection
    entries whose offset difference ``o' - o`` is kernel tap ``k``; rows are padded with ``p**4``, the index of
    an appended zero. A gather (rather than ``index_add``) keeps the sum deterministic on every device.
    """
    p = patch_size
    n_pix = p * p
    width = 2 * p - 1
    offsets = torch.arange(n_pix)
    rows, cols = offsets // p, offsets % p
    # Every (o, o') pair: o indexes rows of L (output pixel), o' columns (input pixel).
    du = rows[None, :] - rows[:, None] + (p - 1)
    dv = cols[None, :] - cols[:, None] + (p - 1)
    tap = (du * width + dv).reshape(-1)
    entry = torch.arange(n_pix * n_pix)

    order = torch.argsort(tap, stable=True)
    sorted_tap = tap[order]
    counts = torch.bincount(tap, minlength=width * width)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(tap.numel()) - starts[sorted_tap]

    index = torch.full((width * width, n_pix), n_pix * n_pix, dtype=torch.long)
    index[sorted_tap, slot] = entry[order]
    return index


def _check_projection(projection: torch.Tensor) -> int:
    """Validate a ``(p**2, p**2)`` projection and return its patch size ``p``."""
    if projection.dim() != 2 or projection.shape[0] != projection.shape[1]:
        raise ValueError(f"projection must be a square matrix, got shape {tuple(projection.shape)}")
    patch_size = math.isqrt(projection.shape[0])
    if patch_size * patch_size != projection.shape[0]:
        raise ValueError(f"projection size {projection.shape[0]} is not the pixel count of a square patch")
    return patch_size


class LatLRRDecomposition(nn.Module):
    """Split images into a low-rank (base) part and a salient (detail) part with a learned LatLRR projection.

    The projection ``L`` (MDLatLRR, Li, Wu & Kittler, IEEE TIP 2020) is a registered buffer named
    ``projection``, so it moves with the module and loads from a state dict; the convolution kernel is rebuilt
    from it on every call, so a newly loaded projection takes effect immediately. The module is TorchScript
    scriptable.

    Args:
        projection: ``(patch_size**2, patch_size**2)`` projection, e.g. from :func:`load_projection`. Defaults
            to zeros, for which the salient part is zero and the low-rank part is the input.
        patch_size: patch side; must match ``projection`` when one is given.
    """

    if TYPE_CHECKING:  # the buffers' types; a runtime class annotation would be a string TorchScript cannot read
        projection: torch.Tensor
        kernel_index: torch.Tensor

    def __init__(self, projection: torch.Tensor | None = None, patch_size: int = DEFAULT_PATCH_SIZE) -> None:
        super().__init__()
        if projection is None:
            projection = torch.zeros(patch_size * patch_size, patch_size * patch_size)
        elif _check_projection(projection) != patch_size:
            raise ValueError(f"projection of shape {tuple(projection.shape)} does not fit patch_size={patch_size}")
        self.patch_size = patch_size
        self.register_buffer("projection", projection.detach().clone().to(torch.float32))
        # Derived from patch_size alone, so it stays out of the state dict.
        self.register_buffer("kernel_index", _kernel_gather_index(patch_size), persistent=False)

    def kernel(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``(1, 1, 2p-1, 2p-1)`` cross-correlation kernel equivalent to projecting all stride-1 patches."""
        width = 2 * self.patch_size - 1
        entries = self.projection.to(dtype).reshape(-1)
        padded = torch.cat([entries, entries.new_zeros(1)])
        taps = padded[self.kernel_index].sum(dim=1) / float(self.patch_size * self.patch_size)
        return taps.reshape(1, 1, width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decompose ``x`` of shape ``(N, C, H, W)`` (channels independently) into ``(low_rank, salient)``.

        Raises:
            ValueError: if ``x`` is not 4D or ``H``/``W`` is below the patch size (reflect padding by
                ``patch_size - 1`` needs at least ``patch_size`` pixels).
        """
        if x.dim() != 4:
            raise ValueError(f"expected a (N, C, H, W) tensor, got {x.dim()} dimensions")
        n, c, h, w = x.shape
        p = self.patch_size
        if h < p or w < p:
            raise ValueError(f"LatLRR decomposition needs H and W of at least {p} px, got {h}x{w}")
        pad = p - 1
        # float64 stays float64; half precision is computed in float32 (and cuFFT's half FFTs want powers of 2)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        planes = F.pad(x.reshape(n * c, 1, h, w).to(dtype), [pad, pad, pad, pad], mode="reflect")
        salient = self._correlate(planes, h, w).reshape(n, c, h, w).to(x.dtype)
        return x - salient, salient

    def _correlate(self, planes: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The valid ``h`` x ``w`` cross-correlation of the padded ``planes`` (M, 1, h + 2p - 2, w + 2p - 2) with
        :meth:`kernel`."""
        kernel = self.kernel(planes.dtype)
        if not torch.jit.is_scripting():  # a scripted module is never exported, and cannot compile the test below
            if torch.onnx.is_in_onnx_export():
                # an exported graph convolves directly, an op every ONNX runtime has: ONNX Runtime 1.32 fails on the
                # exporter's inverse real FFT ("Shape mismatch attempting to re-use buffer" in its DFT kernel)
                return F.conv2d(planes, kernel)
        # circular correlation over the padded size: output pixel (i, j) reads planes[i : i + 2p - 1, j : j + 2p - 1],
        # which never wraps for i < h, j < w, so the first h x w outputs are the valid correlation
        size = [planes.shape[-2], planes.shape[-1]]
        spectrum = torch.fft.rfft2(planes, s=size) * torch.fft.rfft2(kernel, s=size).conj()
        return torch.fft.irfft2(spectrum, s=size)[..., :h, :w]


def default_projection_path() -> Path:
    """Where the repository ships the learned projection: ``bundles/mmif_net/models/latlrr_projection.pt``."""
    return BUNDLE_DIR / "models" / "latlrr_projection.pt"


def load_projection(path: str | Path | None = None) -> torch.Tensor:
    """Load a projection saved by ``scripts/learn_latlrr_projection.py`` (default: :func:`default_projection_path`).

    Accepts the script's dictionary (key ``"projection"``) or a bare tensor; loads with ``weights_only=True``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it holds no square patch projection.
    """
    path = default_projection_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no LatLRR projection; learn one with scripts/learn_latlrr_projection.py --out {path}"
        )
    content = torch.load(path, map_location="cpu", weights_only=True)
    projection = content["projection"] if isinstance(content, dict) else content
    if not isinstance(projection, torch.Tensor):
        raise ValueError(f"{path}: expected a tensor or a dict with a 'projection' tensor")
    _check_projection(projection)
    return projection.to(torch.float32)
