"""The checks a bundle workflow runs before it loads data or writes anything, each ending the run with one line.

Raised inside a bundle config expression, an exception reaches the user as MONAI's chained ``Failed to evaluate``
traceback; these end the run with ``SystemExit("error: ...")`` instead. With ``--tracking mlflow`` MONAI has
already written the executed config (``config_<time>.json``) into ``output_dir`` before any of them runs: a refused
run removes it again, so that it leaves nothing behind. (When that write itself fails, in MONAI before any of these
runs, :mod:`mmif_monai.engines.monai_errors` gives the one line.)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from torch import nn
from torch.optim import Optimizer

__all__ = [
    "refuse_in_one_line",
    "check_outputs_outside_inputs",
    "check_checkpoint_dir",
    "check_resume_checkpoint",
    "check_bundle_weights",
]

#: the name MONAI gives the executed config it writes for ``--tracking`` (``BundleWorkflow.patch_bundle_tracking``)
_EXECUTED_CONFIG = re.compile(r"config_\d{8}_\d{6}\.json")


def _discard_executed_config(output_dir: str | Path | None, executed_config: object) -> None:
    """Remove the config file MONAI's tracking wrote for this run, and ``output_dir`` if that leaves it empty.

    ``executed_config`` is the bundle's ``save_execute_config``: ``True``/``False`` without tracking, else the
    path MONAI built by appending the file name to ``output_dir``'s raw config text (which for a plain path, not
    an expression, is no usable path); the file name is therefore taken from it and joined to ``output_dir``.
    """
    if output_dir is None or not isinstance(executed_config, str):
        return
    name = _EXECUTED_CONFIG.search(executed_config)
    if name is None:
        return
    folder = Path(output_dir).absolute()
    (folder / name.group()).unlink(missing_ok=True)
    # MONAI made output_dir and its missing parents for the file: remove output_dir if left empty, and its parents
    # likewise below the working folder only (where a default such as outputs/mmif_net/training lies); a folder
    # holding anything stays
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
        if folder == Path.cwd() or Path.cwd() not in folder.parents:
            return


@contextmanager
def refuse_in_one_line(output_dir: str | Path | None = None, executed_config: object = None) -> Iterator[None]:
    """Turn a user's error (missing or wrong file or folder, bad value) inside a bundle workflow into one line and
    a non-zero exit, after removing what this run wrote so far (see the module docstring)."""
    try:
        yield
    except (FileNotFoundError, ValueError) as error:
        _discard_executed_config(output_dir, executed_config)
        raise SystemExit(f"error: {error}") from None
    except SystemExit:
        _discard_executed_config(output_dir, executed_config)
        raise


def check_outputs_outside_inputs(
    folders: Sequence[str | Path | None],
    inputs: Sequence[str | Path | None],
    output_dir: str | Path | None = None,
    executed_config: object = None,
) -> None:
    """Refuse output folders (``output_dir``, ``ckpt_dir``) that are an input folder (``dataset_dir``) or lie inside
    one: the workflow's fused images, metrics or checkpoints would land among its inputs (``mmif fuse``'s rule,
    :func:`~mmif_monai.io.outputs.check_outputs_spare_inputs`). An output folder holding the data set is fine.
    None entries (an option not set) are passed over."""
    from mmif_monai.io.outputs import check_outputs_spare_inputs

    with refuse_in_one_line(output_dir, executed_config):
        check_outputs_spare_inputs(
            [], [path for path in inputs if path is not None], folders=[path for path in folders if path is not None]
        )


def check_checkpoint_dir(
    ckpt_dir: str | Path,
    bundle_root: str | Path,
    replace_shipped_weights: bool = False,
    output_dir: str | Path | None = None,
    executed_config: object = None,
) -> None:
    """Refuse to train into the folder of the bundle's shipped weights unless ``replace_shipped_weights``.

    Training writes its best model to ``ckpt_dir/model.pt`` and its checkpoints beside it: into the bundle's
    ``models/`` folder that would replace the weights every other workflow and ``mmif fuse`` load, with whatever
    a short or failed run left there.
    """
    from mmif_monai.io.paths import BUNDLE_DIR

    with refuse_in_one_line(output_dir, executed_config):
        target = Path(ckpt_dir).resolve()
        shipped = {(Path(bundle_root) / "models").resolve(), (BUNDLE_DIR / "models").resolve()}
        if target in shipped and not replace_shipped_weights:
            raise ValueError(
                f"ckpt_dir {ckpt_dir} holds the bundle's shipped weights: training would replace its model.pt. "
                "Train into another folder (--output_dir DIR, or --ckpt_dir DIR), or add "
                "--replace_shipped_weights True to replace them on purpose"
            )


#: what to do about a checkpoint of another configuration
_OTHER_CONFIGURATION = "resume with the configuration that wrote it, or train into a new --ckpt_dir"


def _damaged(older: Path | None) -> str:
    """What to do about a damaged newest checkpoint: training resumes from the newest checkpoint in ckpt_dir."""
    if older is not None:
        return f"delete it to resume from {older.name}, or train into a new --ckpt_dir"
    return "delete it to start afresh, or train into a new --ckpt_dir"


def check_resume_checkpoint(
    ckpt_dir: str | Path,
    network: nn.Module,
    optimizer: Optimizer | None = None,
    output_dir: str | Path | None = None,
    executed_config: object = None,
) -> Path | None:
    """Refuse, before any data load, the checkpoint training would resume from when it cannot be resumed: damaged
    (truncated, random bytes), holding code (never run), not a training checkpoint, or of another configuration
    (its network's parameters, or its optimizer's parameter groups, e.g. other ``trainable_modules``).

    The checkpoint is the newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir``
    (:func:`~mmif_monai.engines.checkpoints.latest_checkpoint`, what
    :func:`~mmif_monai.engines.checkpoints.attach_checkpointing` loads); without one it returns None (a fresh
    start). The message names the file and what to do: delete it (to resume from the one before, if any) or train
    into another ``ckpt_dir``; a checkpoint is never skipped silently.
    """
    import torch

    from mmif_monai.engines.checkpoints import latest_checkpoint
    from mmif_monai.networks.pretrained import check_matches, read_checkpoint

    with refuse_in_one_line(output_dir, executed_config):
        path = latest_checkpoint(ckpt_dir)
        if path is None:
            return None
        ordered = sorted(Path(ckpt_dir).glob("checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.rsplit("=", 1)[-1]))
        damaged = _damaged(ordered[-2] if len(ordered) > 1 else None)
        try:
            state, _ = read_checkpoint(path)  # damaged, code, NaN: refused naming the file, never run
        except ValueError as error:
            raise ValueError(f"{error}; training resumes from the newest checkpoint in ckpt_dir: {damaged}") from None
        try:
            check_matches(path, network, state)
        except ValueError as error:
            raise ValueError(f"{error}; {_OTHER_CONFIGURATION}") from None
        saved = torch.load(path, map_location="cpu", weights_only=True)  # read whole just above: not code
        if not isinstance(saved, dict) or "trainer" not in saved:
            raise ValueError(f"{path}: not a training checkpoint (no trainer state in it); {damaged}")
        if optimizer is not None and isinstance(saved.get("optimizer"), dict):
            groups = [len(group.get("params", ())) for group in saved["optimizer"].get("param_groups", ())]
            expected = [len(group["params"]) for group in optimizer.param_groups]
            if groups != expected:
                raise ValueError(
                    f"{path}: its optimizer state is of another configuration (parameter groups of {groups} tensors,"
                    f" this run's optimizer has {expected}: other trainable_modules?); {_OTHER_CONFIGURATION}"
                )
        return path


def check_bundle_weights(
    weights_file: str | Path,
    network: nn.Module,
    output_dir: str | Path | None = None,
    executed_config: object = None,
) -> None:
    """Refuse, before any data load, weights that inference or evaluation would load and fuse wrongly with.

    The file must exist, be a PyTorch state dict of tensors only (never run as code), match ``network``'s
    configuration and fuse a structured test pair into finite, non-constant values (zeroed or diverged weights
    would otherwise write black images with exit status 0). ``network`` itself is left unchanged.
    """
    from mmif_monai.fusion.methods import check_weights_fuse
    from mmif_monai.networks.pretrained import check_matches, read_weights

    with refuse_in_one_line(output_dir, executed_config):
        try:
            state = read_weights(weights_file)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{weights_file}: weights file not found; give --ckpt_dir a folder holding model.pt "
                "(or --weights_file FILE for evaluation)"
            ) from None
        probe = copy.deepcopy(network).cpu()
        check_matches(Path(weights_file), probe, state)
        probe.load_state_dict(state)
        check_weights_fuse(Path(weights_file), probe)
