"""The MONAI Label infer task ``fusion``: the request's image (the anatomical volume) and the datastore image named
by its ``functional`` parameter fused by the library's volume job, the fused NIfTI volume returned.

A request (``POST /infer/fusion?image=ID&output=image``, form field ``params``, a JSON object):

===============  ===========================================================================================
param            meaning
===============  ===========================================================================================
``functional``   the datastore id of the functional (PET/SPECT, or second CT/MR) volume; required
``register``     ``none`` (default: the headers' world coordinates align the pair), ``rigid`` or ``affine``
``axis``         slicing axis: ``axial`` (default), ``coronal``, ``sagittal`` or a voxel axis 0/1/2
``modalities``   ``[anatomical, functional]`` overriding the headers, e.g. ``["CT", "NM"]``; entries may be null
===============  ===========================================================================================

The fusion is :func:`mmif_monai.jobs.volumes.fuse_volume_files`, as ``mmif fuse --anatomical A --functional F -o
fused.nii.gz`` runs it (same steps, checks and defaults): the result is its NIfTI file (uint8, the anatomical
affine, RGB as a 4th dimension of 3 for a PET/SPECT functional volume). The method, weights, device and batch size
are the server's (``--conf method ... --conf weights ... --conf device ... --conf batch_size ...``), not a
request's. A request the job refuses (a missing functional id, a pair of two patients, a bad axis...) is answered
with HTTP 400 and the job's one-line message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from mmif_monai.devices import resolve_device
from mmif_monai.io.preflight import SLICE_BATCH
from mmif_monai.jobs.volumes import fuse_volume_files

__all__ = ["TASK_NAME", "DEFAULT_CONFIG", "FusionInferTask"]

#: the task's name: the ``{model}`` of ``/infer/{model}``
TASK_NAME = "fusion"

#: the request parameters a client can set, with their defaults (MONAI Label clients show them as the model's config)
DEFAULT_CONFIG: dict[str, Any] = {"functional": "", "register": "none", "axis": "axial", "modalities": None}

_REGISTER: dict[str, bool | str] = {
    "none": False,
    "": False,
    "false": False,
    "rigid": "rigid",
    "true": "rigid",
    "affine": "affine",
}


def _register(value: object) -> bool | str:
    if value is None:
        return False
    if isinstance(value, bool):
        return "rigid" if value else False
    if isinstance(value, str) and value.lower() in _REGISTER:
        return _REGISTER[value.lower()]
    raise ValueError(f"register {value!r}: expected none, rigid or affine")


def _axis(value: object) -> int | str:
    if value is None or value == "":
        return "axial"
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    raise ValueError(f"axis {value!r}: expected axial, coronal, sagittal or a voxel axis 0, 1 or 2")


def _modalities(value: object) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, list | tuple) and len(value) == 2 and all(v is None or isinstance(v, str) for v in value):
        return value[0], value[1]
    raise ValueError(f'modalities {value!r}: expected [anatomical, functional], e.g. ["CT", "PT"]')


class FusionInferTask(InferTask):
    """Fuse the request's anatomical image with its ``functional`` datastore image (module docstring).

    Args:
        image_uri: the datastore's ``get_image_uri``: an image id to its file ("" for an unknown id).
        method, weights: the fusion method and its weights, as ``mmif fuse --method/--weights`` (default: MMIF-Net
            with the bundle's weights).
        device: torch device name; None: CUDA when present, else the CPU.
        batch_size: slices per network call (``mmif fuse``'s default, ``SLICE_BATCH``).

    Raises:
        ValueError: ``device`` is not a device of this machine (when the app starts, not on a request).
    """

    def __init__(
        self,
        image_uri: Callable[[str], str],
        method: str = "mmif-net",
        weights: str | Path | None = None,
        device: str | torch.device | None = None,
        batch_size: int = SLICE_BATCH,
    ):
        super().__init__(
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description=f"Fuse the image with the functional volume named by params.functional ({method})",
            config=dict(DEFAULT_CONFIG),
        )
        self.image_uri = image_uri
        self.method = method
        self.weights = weights
        self.device = resolve_device(device)
        self.batch_size = batch_size

    def is_valid(self) -> bool:
        return True

    def _functional_path(self, functional: object) -> str:
        if not isinstance(functional, str) or not functional:
            raise ValueError("params.functional: give the datastore id of the functional volume to fuse with the image")
        path = self.image_uri(functional)
        if not path:
            raise ValueError(f"params.functional: no image {functional!r} in the datastore")
        return path

    def __call__(self, request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run the fusion; returns the fused NIfTI file (a temporary file that MONAI Label deletes once it has sent
        it) and the job's record: the functional id, method, slice count, notes and per-step seconds.

        Raises:
            fastapi.HTTPException: 400, with the job's message, for a request the job refuses.
        """
        params = {**self.config(), **request}
        work = Path(tempfile.mkdtemp(prefix="mmif-label-"))
        try:
            anatomical = params.get("image")
            if not isinstance(anatomical, str) or not anatomical:
                raise ValueError("image: not in the datastore")
            functional = self._functional_path(params.get("functional"))
            result = fuse_volume_files(
                anatomical,
                functional,
                work / "fused.nii.gz",
                method=self.method,
                weights=self.weights,
                device=self.device,
                register=_register(params.get("register")),
                axis=_axis(params.get("axis")),
                batch_size=self.batch_size,
                modalities=_modalities(params.get("modalities")),
            )
            handle, fused = tempfile.mkstemp(prefix="mmif-fused-", suffix=".nii.gz")
            os.close(handle)
            shutil.move(str(result.outputs[0]), fused)
        except (ValueError, FileNotFoundError) as error:
            raise HTTPException(status_code=400, detail=str(error)) from error
        finally:
            shutil.rmtree(work, ignore_errors=True)
        record = {
            "functional": params["functional"],
            "method": self.method,
            "slices": result.count,
            "notes": result.notes,
            "timings": {step: round(time.wall, 3) for step, time in result.timings.items()},
        }
        return fused, record
