"""Exporting a fusion network to ONNX, for ONNX Runtime and OpenVINO (``mmif_monai.fusion.engines``).

The model exported is the network's inference form (batch norm folded,
:func:`~mmif_monai.networks.blocks.fold_batch_norm`) through torch's ``torch.export``-based exporter
(``torch.onnx.export(..., dynamo=True)``), with a dynamic batch and dynamic slice height and width: one model per
weights file fuses any slice size. MMIF-Net's size handling (the 64 px zero canvas, the reflect padding to a multiple
of 16, the crops back) is traced symbolically, so it becomes shape arithmetic in the graph (``Shape``, ``Max``,
``Mod``, ``Pad``, ``Slice``) rather than constants of the example size. ``torch.export`` also records guards on the
example's size class (above 64 px, not a multiple of 16), which ``torch.onnx`` turns into runtime assertions and ONNX
drops; the graph's arithmetic holds for the other classes too (zero-width pads, the canvas), and tests/test_export.py
checks each class against torch: multiples of 16 and not, above, at and below 64 px, the 16 px minimum. The LatLRR
correlation is exported as a convolution (:class:`~mmif_monai.decomposition.projection.LatLRRDecomposition`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from mmif_monai.networks.blocks import fold_batch_norm

__all__ = ["OPSET", "INPUT_NAMES", "OUTPUT_NAME", "MIN_EXPORT_SIDE", "export_onnx"]

#: the ONNX opset: 20 is read by ONNX Runtime from 1.17 and by OpenVINO 2024 on
OPSET = 20
#: the exported model's inputs, each (N, 1, H, W) float32 in [0, 1], and its output (N, 1, H, W)
INPUT_NAMES = ("anatomical", "functional")
OUTPUT_NAME = "fused"
#: the smallest slice side the exported model takes: the LatLRR patch (the file jobs refuse smaller slices)
MIN_EXPORT_SIDE = 16


def export_onnx(network: nn.Module, path: str | Path) -> Path:
    """Write ``network``'s inference form to ``path`` as one self-contained ONNX file (weights inside).

    ``network`` takes ``(anatomical, functional)`` (N, 1, H, W) batches, as MMIF-Net does; it is left unchanged.
    The exporter's own progress lines and warnings are kept off stdout and stderr (they are not the user's); with
    logging at DEBUG they go to this module's logger.
    """
    path = Path(path)
    folded = fold_batch_norm(network).float().cpu()
    # an example off the multiples of 16 and above the canvas, batch 2: no size of the example is one the
    # exporter could mistake for a constant (it specialises sizes 0 and 1)
    example = tuple(torch.rand(2, 1, 72, 88) for _ in INPUT_NAMES)
    batch = torch.export.Dim("batch", min=1)
    height, width = torch.export.Dim("height", min=MIN_EXPORT_SIDE), torch.export.Dim("width", min=MIN_EXPORT_SIDE)
    shapes = {name: {0: batch, 2: height, 3: width} for name in INPUT_NAMES}
    chatter = io.StringIO()
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                folded, example, dynamo=True, opset_version=OPSET, input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME], dynamic_shapes=shapes, verbose=False,
            )  # fmt: skip
    finally:
        exporter_log.setLevel(level)
        logging.getLogger(__name__).debug("torch.onnx.export: %s", chatter.getvalue())
    if program is None:  # only the TorchScript exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(path, external_data=False)
    return path
