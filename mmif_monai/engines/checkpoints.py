"""Training checkpoints that include the trainer's own state (saved every epoch, resumed from the newest) and
the best model by the validation key metric; every file is written through a temporary and a rename.

The trainer cannot sit in its own handler list's ``save_dict`` (a circular reference in bundle configs), so
bundles call :func:`attach_checkpointing` after building it. A resumed run continues where the killed one
stopped: besides the network, optimizer, schedule and trainer, the checkpoint carries the early-stopping
count (:class:`ResumableEarlyStopHandler`), the evaluator's best key metric (:class:`EvaluatorBestMetric`), the
best model's score (:class:`BestModelSaver`) and the list of checkpoint files written so far.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, EarlyStopping
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointLoader, EarlyStopHandler
from torch.optim.lr_scheduler import CosineAnnealingLR

from mmif_monai.io.images import atomic_output

__all__ = [
    "AtomicDiskSaver",
    "BestModelSaver",
    "EvaluatorBestMetric",
    "ResumableEarlyStopHandler",
    "latest_checkpoint",
    "attach_checkpointing",
]

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


class EvaluatorBestMetric:
    """The evaluator's best key metric so far and its epoch, as an object for the training checkpoint.

    MONAI's workflows compare every validation with ``state.best_metric`` (their ``StatsHandler`` logs it with
    ``state.best_metric_epoch``), and neither is in Ignite's ``Engine.state_dict``: without this a resumed run
    starts both over and logs its first validation as a new best, whatever the earlier ones scored. The evaluator
    itself is not checkpointed instead: loading its state would also restore its epoch length, wrong as soon as
    the validation set changes between the runs.
    """

    def __init__(self, evaluator: Engine) -> None:
        self.evaluator = evaluator

    def state_dict(self) -> dict[str, Any]:
        state: Any = self.evaluator.state  # MONAI's Workflow adds both to Ignite's State
        return {"best_metric": state.best_metric, "best_metric_epoch": state.best_metric_epoch}

    def load_state_dict(self, state_dict: Mapping) -> None:
        state: Any = self.evaluator.state
        state.best_metric = state_dict["best_metric"]
        state.best_metric_epoch = state_dict["best_metric_epoch"]


class ResumableEarlyStopHandler(EarlyStopHandler):
    """MONAI's ``EarlyStopHandler`` with the state (count of validations without improvement, best score) of the
    Ignite ``EarlyStopping`` it wraps, so that the count goes into the training checkpoint.

    MONAI's handler has no ``state_dict``, so a resumed run would start counting from 0 again and stop up to
    ``patience`` validations later than an uninterrupted one. Ignite's handler exists once ``set_trainer`` ran.
    """

    def _early_stopping(self) -> EarlyStopping:
        handler: EarlyStopping | None = self._handler
        if handler is None:
            raise RuntimeError("please set trainer in __init__() or call set_trainer() before saving or loading.")
        return handler

    def state_dict(self) -> dict[str, Any]:
        return dict(self._early_stopping().state_dict())

    def load_state_dict(self, state_dict: Mapping) -> None:
        self._early_stopping().load_state_dict(state_dict)


def _keep_configured_cosine_horizon(engine: Engine, name: str, scheduler: CosineAnnealingLR, t_max: int) -> None:
    """After a checkpoint is loaded, give ``scheduler`` its configured ``t_max`` again instead of the earlier run's,
    with the learning rates a cosine schedule over ``t_max`` epochs has at the resumed epoch.

    Restoring only ``T_max`` is not enough: torch's update scales the current rate, so a finished schedule's rate
    of ``eta_min`` would stay there. (MONAI's ``CheckpointLoader`` already keeps the trainer's own ``max_epochs``.)
    """
    if scheduler.T_max == t_max:
        return
    earlier, scheduler.T_max = scheduler.T_max, t_max
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        cosine = (1 + math.cos(math.pi * scheduler.last_epoch / t_max)) / 2
        group["lr"] = scheduler.eta_min + (base_lr - scheduler.eta_min) * cosine
    logger.info(
        "%s: cosine schedule stretched from the checkpoint's T_max=%d to the configured T_max=%d; "
        "learning rate %g at epoch %d",
        name,
        earlier,
        t_max,
        scheduler.optimizer.param_groups[0]["lr"],
        engine.state.epoch,
    )


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
    the next, so with one kept a kill during that write would leave no complete checkpoint at all. Each file
    also holds the saver's own list of the files it wrote (Ignite's ``include_self``), so a resumed run
    deletes the earlier run's files in turn instead of keeping them all.

    A ``CosineAnnealingLR`` among ``objects`` keeps the ``T_max`` it was configured with rather than the
    checkpoint's (logged when they differ): a rerun with more epochs continues on a cosine schedule that reaches
    its minimum at the new last epoch, not on the earlier run's, which is already at or near 0.

    Returns the checkpoint training resumes from, or None for a fresh start. A killed run therefore loses at
    most the epoch in progress. In distributed training every rank resumes but only one should ``save``.
    """
    state = {**objects, "trainer": trainer}
    to_load = dict(state)
    if save:
        checkpoint = Checkpoint(
            state,
            AtomicDiskSaver(ckpt_dir),
            score_function=lambda engine: engine.state.epoch,
            score_name="epoch",
            n_saved=2,
            include_self=True,
        )
        trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
        to_load["checkpointer"] = checkpoint  # the key Ignite's include_self saves it under
    path = latest_checkpoint(ckpt_dir)
    if path is not None:
        logger.info("resuming from %s", path)
        saved = torch.load(path, map_location="cpu", weights_only=True).keys()
        # a checkpoint of an earlier version lacks the entries added since: those start afresh, said in one line
        absent = sorted(set(to_load) - set(saved) - {"model", "trainer"})
        if absent:
            logger.info("%s has no %s; starting those afresh", path.name, ", ".join(absent))
        to_load = {name: item for name, item in to_load.items() if name not in absent}
        CheckpointLoader(load_path=str(path), load_dict=to_load, map_location=map_location).attach(trainer)
        for name, scheduler in objects.items():
            if isinstance(scheduler, CosineAnnealingLR):  # registered after the loader, so it runs after loading
                trainer.add_event_handler(
                    Events.STARTED, _keep_configured_cosine_horizon, name, scheduler, scheduler.T_max
                )
    return path
