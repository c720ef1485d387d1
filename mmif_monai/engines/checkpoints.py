"""Training checkpoints that include the trainer's own state: saved every epoch, resumed from the newest.

The trainer cannot sit in its own handler list's ``save_dict`` (a circular reference in bundle configs), so
bundles call :func:`attach_checkpointing` after building it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader

__all__ = ["latest_checkpoint", "attach_checkpointing"]

logger = logging.getLogger(__name__)


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

    Each checkpoint is written to a temporary file and renamed (Ignite's ``DiskSaver(atomic=True)``; MONAI's
    ``CheckpointSaver`` writes in place), and the last two are kept: Ignite deletes the oldest before writing
    the next, so with one kept a kill during that write would leave no complete checkpoint at all.

    Returns the checkpoint training resumes from, or None for a fresh start. A killed run therefore loses at
    most the epoch in progress. In distributed training every rank resumes but only one should ``save``.
    """
    state = {**objects, "trainer": trainer}
    if save:
        saver = DiskSaver(str(ckpt_dir), require_empty=False, atomic=True)
        checkpoint = Checkpoint(state, saver, score_function=lambda engine: engine.state.epoch, score_name="epoch", n_saved=2)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    path = latest_checkpoint(ckpt_dir)
    if path is not None:
        logger.info("resuming from %s", path)
        CheckpointLoader(load_path=str(path), load_dict=state, map_location=map_location).attach(trainer)
    return path
