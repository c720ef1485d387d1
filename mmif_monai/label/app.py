"""The MONAI Label app: one infer task, ``fusion`` (:class:`~mmif_monai.label.infer.FusionInferTask`), over the
studies folder's volumes; no training, active learning or scoring (there are no labels to learn from).

An app folder's ``main.py`` imports :class:`FusionLabelApp` (``python -m mmif_monai.label APP_DIR`` writes it).
The server's settings come from ``monailabel start_server --conf KEY VALUE``:

=================  ==========================================================================================
conf               meaning
=================  ==========================================================================================
``method``         fusion method of ``mmif fuse --method`` (default ``mmif-net``)
``weights``        MMIF-Net weights file (default: the bundle's ``models/model.pt``)
``device``         torch device (default: CUDA when present, else the CPU)
``batch_size``     slices per network call (default ``SLICE_BATCH``, 4, as ``mmif fuse``)
=================  ==========================================================================================
"""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

from mmif_monai.io.preflight import SLICE_BATCH
from mmif_monai.label.infer import TASK_NAME, FusionInferTask

__all__ = ["FusionLabelApp"]


class FusionLabelApp(MONAILabelApp):
    """MONAI Label app serving :class:`~mmif_monai.label.infer.FusionInferTask` as ``/infer/fusion``."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="MMIF fusion",
            description="Multimodal medical image fusion (MMIF-Net): anatomical + functional volume -> fused volume",
            version="0.1.0",
        )

    def init_infers(self) -> dict[str, InferTask]:
        conf = self.conf
        return {
            TASK_NAME: FusionInferTask(
                self.datastore().get_image_uri,
                method=conf.get("method", "mmif-net"),
                weights=conf.get("weights") or None,
                device=conf.get("device") or None,
                batch_size=int(conf.get("batch_size", SLICE_BATCH)),
            )
        }

    def init_strategies(self) -> dict[str, Any]:
        return {}
