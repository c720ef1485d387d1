"""Import MONAI without the MONAI Deploy SDK.

``import monai`` walks and imports every subpackage of the ``monai`` namespace, and the Deploy SDK installs
itself there as ``monai.deploy``: with the ``deploy`` extra, every ``mmif`` command, test and training run would
import the SDK and Holoscan (seconds, and Holoscan's stack-size warning on stderr). While MONAI's own
``__init__`` runs, an empty ``monai.deploy`` stand-in sits in ``sys.modules`` so that the walk finds nothing
below it; it is removed as soon as MONAI is loaded, so an explicit ``import monai.deploy...`` (only
:mod:`mmif_monai.deploy` does that) loads the real SDK. Installing the hook imports nothing: ``import mmif_monai``
stays cheap, and MONAI loads when a module first needs it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence


class _MonaiWithoutDeploy(importlib.abc.MetaPathFinder):
    """Finds ``monai`` once, through the normal finders, and wraps its module execution."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "monai":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("monai")
        if spec is None or spec.loader is None:
            return spec
        run_monai_init = spec.loader.exec_module

        def exec_without_deploy(module: types.ModuleType) -> None:
            stand_in = types.ModuleType("monai.deploy")
            stand_in.__path__ = []  # a package without submodules
            sys.modules["monai.deploy"] = stand_in
            try:
                run_monai_init(module)
            finally:
                if sys.modules.get("monai.deploy") is stand_in:
                    del sys.modules["monai.deploy"]
                if getattr(module, "deploy", None) is stand_in:
                    delattr(module, "deploy")

        spec.loader.exec_module = exec_without_deploy  # type: ignore[method-assign]
        return spec


def install_monai_import_hook() -> None:
    """Make the first ``import monai`` of this process skip ``monai.deploy`` (no-op once MONAI is loaded)."""
    if "monai" not in sys.modules and not any(isinstance(f, _MonaiWithoutDeploy) for f in sys.meta_path):
        sys.meta_path.insert(0, _MonaiWithoutDeploy())
