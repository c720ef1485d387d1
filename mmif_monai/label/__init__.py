"""MONAI Label app: an infer task that fuses a study's anatomical and functional volumes and returns the fused volume.

Needs the ``[label]`` extra and MONAI Label itself, installed without its dependencies (docs/deploy.md, "MONAI
Label"). Only :func:`write_app_dir` lives here and it imports nothing, so ``import mmif_monai`` never needs MONAI
Label: :mod:`mmif_monai.label.infer` (the task), :mod:`mmif_monai.label.app` (the app) and
:mod:`mmif_monai.label.server` (the ASGI app ``monailabel start_server`` serves) import it.

    python -m mmif_monai.label APP_DIR                # writes APP_DIR/main.py
    monailabel start_server --app APP_DIR --studies STUDIES_DIR --uvicorn_app mmif_monai.label.server:app
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP_MAIN", "SERVER_APP", "write_app_dir"]

#: the app folder's ``main.py``: MONAI Label loads the MONAILabelApp subclass it finds in that module
APP_MAIN = "from mmif_monai.label.app import FusionLabelApp  # noqa: F401  (MONAI Label loads it from here)\n"

#: the ``--uvicorn_app`` of ``monailabel start_server`` (mmif_monai.label.server)
SERVER_APP = "mmif_monai.label.server:app"


def write_app_dir(folder: str | Path) -> Path:
    """Write a MONAI Label app folder holding ``main.py`` (:data:`APP_MAIN`) and return the ``main.py`` path.

    ``monailabel start_server`` adds ``model/``, ``lib/``, ``logs/`` and ``bin/`` to the app folder, so it is a
    folder of the user's, not one inside the installed package.

    Raises:
        FileExistsError: ``folder/main.py`` exists (it is never replaced).
    """
    main = Path(folder) / "main.py"
    if main.exists():
        raise FileExistsError(f"{main}: exists; not replaced")
    main.parent.mkdir(parents=True, exist_ok=True)
    main.write_text(APP_MAIN)
    return main
