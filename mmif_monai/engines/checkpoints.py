"""Training checkpoints that include the trainer's own state (saved every epoch, resumed from the newest) and
the best model by the validation key metric; every file is written through a temporary and a rename.

The trainer cannot sit in its own handler list's ``save_dict`` (a circular reference in bundle configs), so
bundles call :func:`attach_checkpointing` after building it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointLoader

from mmif_monai.io.images import atomic_output

__all__ = ["AtomicDiskSaver", "BestModelSaver", "latest_checkpoint", "attach_checkpointing"]

logger = logging.getLogger(__name__)


class AtomicDiskSaver(BaseSaveHandler):
    """Ignite save handler that writes each checkpoint to a temporary file beside it and renames it into place.

    Ignite's ``DiskSaver(atomic=True)`` also renames a temporary file into place, then adds group and other read
    to the temporary file's owner-only mode: 0644 whatever the umask, so a group-writable team folder (umask 002)
    gets files its group cannot replace. Here the file gets the mode of any new file, 0666 less the umask.
    With a fixed ``filename`` (e.g. ``model.pt``) every save replaces that one file, and the rename itself
    retires the previous version: ``remove`` then does nothing, so no moment exists without a complete file.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        self.dirname = Path(dirname)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        with atomic_output(self.dirname / (self.filename or filename)) as tmp:
            torch.save(checkpoint, tmp)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            (self.dirname / filename).unlink(missing_ok=True)


class BestModelSaver:
    """Evaluator handler keeping the network with the best key metric so far at ``save_dir/filename``.

    The file holds the network's state dict alone (as MONAI's ``CheckpointSaver`` with ``key_metric_filename``
    writes it) but is replaced atomically, so a kill during the save cannot damage the previous best model.
    Its ``state_dict`` (the best score so far) belongs in the training checkpoint: a resumed run then keeps the
    earlier best instead of overwriting it with the first validation after the restart.
    """

    def __init__(self, save_dir: str | Path, network: torch.nn.Module, filename: str = "model.pt") -> None:
        self._checkpoint = Checkpoint(
            {"model": network},
            AtomicDiskSaver(save_dir, filename),
            score_function=lambda engine: engine.state.metrics[engine.state.key_metric_name],  # type: ignore[attr-defined]  # MONAI's Workflow adds it to State
            score_name="key_metric",
            n_saved=1,
        )

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._checkpoint)

    def state_dict(self) -> dict:
        return self._checkpoint.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        self._checkpoint.load_state_dict(state_dict)


def latest_checkpoint(ckpt_dir: str | Path, pattern: str = "checkpoint_epoch=*.pt") -> Path | None:
    """The checkpoint with the highest epoch number in ``ckpt_dir``, or None."""
    candidates = list(Path(ckpt_dir).glob(pattern))
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(p.stem.rsplit("=", 1)[-1]))


def attach_checkpointing(
    trainer: Engine, ckpt_dir: str | Path, objects: Mapping[str, Any], map_location: Any = None, save: bool = True
) -> Path | None:
    """Save ``objects`` plus the trainer's state to ``ckpt_dir`` after every epoch, and resume from the newest
    checkpoint there if one exists.

    Each checkpoint is written to a temporary file and renamed (:class:`AtomicDiskSaver`; MONAI's
    ``CheckpointSaver`` writes in place), and the last two are kept: Ignite deletes the oldest before writing
    the next, so with one kept a kill during that write would leave no complete checkpoint at all.

    Returns the checkpoint training resumes from, or None for a fresh start. A killed run therefore loses at
    most the epoch in progress. In distributed training every rank resumes but only one should ``save``.
    """
    state = {**objects, "trainer": trainer}
    if save:
        checkpoint = Checkpoint(
            state,
            AtomicDiskSaver(ckpt_dir),
            score_function=lambda engine: engine.state.epoch,
            score_name="epoch",
            n_saved=2,
        )
        trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    path = latest_checkpoint(ckpt_dir)
    if path is not None:
        logger.info("resuming from %s", path)
        CheckpointLoader(load_path=str(path), load_dict=state, map_location=map_location).attach(trainer)
    return path
