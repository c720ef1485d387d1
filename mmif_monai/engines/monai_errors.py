"""One line for the error MONAI raises while it builds a bundle workflow, before any of the bundle's own code runs.

With ``--tracking mlflow`` MONAI's ``ConfigWorkflow`` writes the executed config (``config_<time>.json``) into
``output_dir`` as it is constructed (``BundleWorkflow.patch_bundle_tracking``), before the workflow's
``initialize`` list: an ``output_dir`` that cannot be written (a read-only file system or folder) fails there
with MONAI's traceback, out of reach of the bundle's checks (:mod:`mmif_monai.engines.preflight`). MONAI
evaluates a config's import statements just before that write, so the bundle configs import this module
(``"$import mmif_monai.engines.monai_errors"``), which installs a ``sys.excepthook`` that prints an ``OSError``
raised inside ``patch_bundle_tracking`` as one line, ``error: cannot write <file>: <reason>; ...``; the process
still exits with status 1. Every other exception goes to the hook installed before, with its traceback.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

__all__ = ["tracking_write_error", "install"]

#: the MONAI function that writes the executed config for ``--tracking``
_TRACKING_PATCH = "patch_bundle_tracking"


def tracking_write_error(error: BaseException, trace: TracebackType | None) -> str | None:
    """The one-line message for ``error`` when it is an ``OSError`` raised inside MONAI's tracking patch, else
    None."""
    if not isinstance(error, OSError):
        return None
    frames = []
    while trace is not None:
        frames.append(trace.tb_frame.f_code.co_name)
        trace = trace.tb_next
    if _TRACKING_PATCH not in frames:
        return None
    target = os.fsdecode(error.filename) if error.filename is not None else "output_dir"
    return (
        f"error: cannot write {target}: {error.strerror or type(error).__name__}; --tracking writes the executed"
        " config and the MLflow store into output_dir: give --output_dir a folder you can write"
    )


def install() -> None:
    """Chain :func:`tracking_write_error`'s one line in front of the current ``sys.excepthook`` (once)."""
    earlier = sys.excepthook
    if getattr(earlier, "_mmif_one_line", False):
        return

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        line = tracking_write_error(error, trace)
        if line is None:
            earlier(kind, error, trace)
        else:
            print(line, file=sys.stderr)

    hook._mmif_one_line = True  # type: ignore[attr-defined]
    sys.excepthook = hook


install()
