"""The ASGI app for ``monailabel start_server --uvicorn_app mmif_monai.label.server:app``: MONAI Label's own FastAPI
app (``monailabel.app:app``, the default), imported once pydicom 3 can serve an import it makes.

MONAI Label 0.8.5's infer endpoint imports ``pydicom_seg`` (0.4.1, its last release), which imports
``pydicom._storage_sopclass_uids``, a module pydicom 3.0 removed (its UIDs are in ``pydicom.uid`` since 2.3). This
project pins pydicom 3, so ``monailabel.app`` fails to import and the server never starts (docs/deploy.md, "MONAI
Label", shows the error). Where that module is missing, ``pydicom.uid`` stands in for it. pydicom_seg takes only
``SegmentationStorage`` from it, and MONAI Label uses pydicom_seg only to write DICOM SEG (``output=dicom_seg`` with a
DICOMweb datastore), which the fusion app never returns.
"""

from __future__ import annotations

import importlib
import sys

import pydicom.uid

__all__ = ["app"]

_REMOVED_IN_PYDICOM_3 = "pydicom._storage_sopclass_uids"

try:
    importlib.import_module(_REMOVED_IN_PYDICOM_3)
except ModuleNotFoundError:
    sys.modules[_REMOVED_IN_PYDICOM_3] = pydicom.uid

from monailabel.app import app  # noqa: E402
