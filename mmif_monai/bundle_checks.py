"""The MONAI model-zoo's own checks of a bundle, runnable offline.

What model-zoo's ``ci/verify_bundle.py`` checks in its full mode, in its order: the files a zoo bundle must
have (``configs/metadata.json``, ``LICENSE``) and should have (``models/model.pt``, ``configs/inference.json``);
the version named in the changelog; the metadata against MONAI's schema (``verify_metadata``); the network's
declared input and output (``verify_net_in_out`` on ``inference.json``); the weights exported to TorchScript
(``ckpt_export``). The zoo leaves the train and evaluate workflows to its unit tests, which build them with
``ConfigWorkflow`` and call ``check_properties()``: that is done here too, for every workflow the bundle ships.
The zoo downloads the schema; here it is given as a file (``tests/data`` keeps MONAI's).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

__all__ = ["REQUIRED_FILES", "PREFERRED_FILES", "SCHEMA_SHA256", "WORKFLOWS", "BundleCheckError", "verify_bundle"]

REQUIRED_FILES = ("configs/metadata.json", "LICENSE")
PREFERRED_FILES = ("models/model.pt", "configs/inference.json")

#: sha256 of the MONAI metadata schemas known here, by file name (tests/data keeps the one ``metadata.json`` names):
#: given to ``verify_metadata`` so that a changed copy is refused; another schema file is read unchecked (MONAI warns
#: that no hash was given)
SCHEMA_SHA256 = {"meta_schema_20240725.json": "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"}

#: (workflow type, config files in the order they are merged) for each workflow the bundle ships; the
#: multi-GPU configs need a process group and are run by tests/test_bundle_distributed.py instead
WORKFLOWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train", ("train.json",)),
    ("train", ("train.json", "train_fusion.json")),
    ("eval", ("train.json", "evaluate.json")),
    ("infer", ("inference.json",)),
)


class BundleCheckError(ValueError):
    """A model-zoo check the bundle fails; the message names the check."""


def _check_files(bundle_dir: Path) -> None:
    missing = [name for name in REQUIRED_FILES + PREFERRED_FILES if not (bundle_dir / name).is_file()]
    if missing:
        raise BundleCheckError(f"{bundle_dir}: missing {', '.join(missing)}")


def _check_version(bundle_dir: Path) -> None:
    metadata = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
    if metadata.get("version") not in metadata.get("changelog", {}):
        raise BundleCheckError(f"metadata version {metadata.get('version')!r} has no entry in its changelog")


def _check_properties(bundle_dir: Path, overrides: Mapping[str, Any]) -> None:
    for workflow_type, names in WORKFLOWS:
        workflow = ConfigWorkflow(
            config_file=[str(bundle_dir / "configs" / name) for name in names],
            meta_file=str(bundle_dir / "configs" / "metadata.json"),
            logging_file=str(bundle_dir / "configs" / "logging.conf"),
            workflow_type=workflow_type,
            bundle_root=str(bundle_dir),
            **overrides,
        )
        workflow.initialize()
        try:
            missing = workflow.check_properties()
        except KeyError as error:  # MONAI raises on the first required property whose config ID is absent
            raise BundleCheckError(f"{' + '.join(names)} ({workflow_type}): {error.args[0]}") from None
        if missing:
            raise BundleCheckError(f"{' + '.join(names)} ({workflow_type}): missing properties {missing}")


def verify_bundle(
    bundle_dir: str | Path,
    schema_file: str | Path,
    work_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    report: Callable[[str], None] = print,
) -> list[str]:
    """Run the model-zoo checks on ``bundle_dir``; returns the names of the checks passed, in order.

    Args:
        bundle_dir: the bundle folder (``configs/``, ``models/``, ``LICENSE``).
        schema_file: MONAI's metadata schema (the file ``metadata.json``'s ``schema`` URL names).
        work_dir: where the TorchScript export is written (the zoo writes it into the bundle's ``models/``).
        overrides: config values for building the workflows, e.g. a small ``dataset_dir``.
        report: called with one line per check passed.

    Raises:
        BundleCheckError: a file, version or property check fails.
        Exception: whatever MONAI's ``verify_metadata``, ``verify_net_in_out`` or ``ckpt_export`` raises.
    """
    bundle = Path(bundle_dir)
    meta_file = str(bundle / "configs" / "metadata.json")
    inference = str(bundle / "configs" / "inference.json")
    exported = Path(work_dir) / "verify_model.ts"
    checks: Sequence[tuple[str, Callable[[], object]]] = (
        ("files", lambda: _check_files(bundle)),
        ("version and changelog", lambda: _check_version(bundle)),
        (
            "metadata schema",
            lambda: verify_metadata(
                meta_file=meta_file,
                filepath=str(schema_file),
                hash_val=SCHEMA_SHA256.get(Path(schema_file).name),
                hash_type="sha256",
            ),
        ),
        ("properties", lambda: _check_properties(bundle, overrides or {})),
        (
            "network input and output",
            lambda: verify_net_in_out(
                net_id="network_def", meta_file=meta_file, config_file=inference, bundle_root=str(bundle)
            ),
        ),
        (
            "TorchScript export",
            lambda: ckpt_export(
                net_id="network_def",
                filepath=str(exported),
                ckpt_file=str(bundle / "models" / "model.pt"),
                key_in_ckpt="model",  # the shipped form: {"model": state dict, "network": MMIF-Net arguments}
                meta_file=meta_file,
                config_file=inference,
                bundle_root=str(bundle),
            ),
        ),
    )
    passed = []
    for name, check in checks:
        check()
        report(f"{name}: verified")
        passed.append(name)
    return passed
