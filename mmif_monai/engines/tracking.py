"""What the bundle adds to MONAI's ``--tracking mlflow``: run parameters, fused samples, the final model.

MONAI's tracking patch attaches ``MLFlowHandler`` to ``train#handlers`` and ``validate#handlers``; those log
losses, validation metrics and the executed config. :func:`attach_tracking_extras` finds the trainer's
handler in the parsed handler list and, only when tracking is on, logs through the same MLflow run: the
experiment parameters (at start), a grid of fused validation samples after every validation, and the best
model at the end. Samples come from the dataset folder the user trains on; parameters are config values, so
no patient identity can reach the run from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler

__all__ = ["attach_tracking_extras"]


def _tracker(handlers: Sequence[Any] | None) -> MLFlowHandler | None:
    return next((h for h in handlers or () if isinstance(h, MLFlowHandler)), None)


def _save_samples(evaluator: Engine, trainer: Engine, samples_dir: Path, max_samples: int) -> Path | None:
    from mmif_monai.io.preview import save_preview_grid

    outputs = evaluator.state.output if isinstance(evaluator.state.output, list) else []
    batch = evaluator.state.batch if isinstance(evaluator.state.batch, list) else [{}] * len(outputs)
    rows, labels = [], []
    for output, item in list(zip(outputs, batch))[:max_samples]:
        image, pred = output["image"].detach().cpu(), output["pred"].detach().cpu()
        rows.append([image[:1], image[1:2], pred.clamp(0, 1)])
        labels.append(f"{item.get('pair_type', '')} {item.get('name', '')}".strip())
    if not rows:
        return None
    path = samples_dir / f"fused_epoch_{trainer.state.epoch:03d}.png"
    return save_preview_grid(rows, labels, ["anatomical", "functional (Y)", "fused"], path)


def attach_tracking_extras(
    trainer: Engine,
    evaluator: Engine,
    trainer_handlers: Sequence[Any] | None,
    params: Mapping[str, Any],
    output_dir: str | Path,
    model_file: str | Path,
    max_samples: int = 4,
) -> bool:
    """Log ``params``, fused validation samples and ``model_file`` to the run of the trainer's MLFlowHandler.

    Sample grids are also written to ``output_dir/samples``.

    Returns whether tracking was on (an ``MLFlowHandler`` among ``trainer_handlers``); without one it does
    nothing, so the same config trains with or without ``--tracking mlflow``.
    """
    tracker = _tracker(trainer_handlers)
    if tracker is None:
        return False
    tracker.experiment_param = {**(tracker.experiment_param or {}), **{k: str(v) for k, v in params.items()}}

    def log_samples(engine: Engine) -> None:
        path = _save_samples(engine, trainer, Path(output_dir) / "samples", max_samples)
        if path is not None and tracker.cur_run is not None:
            tracker.client.log_artifact(tracker.cur_run.info.run_id, str(path), "samples")

    logged_mtimes: dict[Path, float] = {}

    def log_if_changed(path: Path, artifact_dir: str) -> None:
        if path.is_file() and logged_mtimes.get(path) != path.stat().st_mtime and tracker.cur_run is not None:
            tracker.client.log_artifact(tracker.cur_run.info.run_id, str(path), artifact_dir)
            logged_mtimes[path] = path.stat().st_mtime

    # MONAI writes the executed config to output_dir as config_<time>.json before the run; when output_dir is
    # overridden with a plain path its own handler loses track of the file, so log the newest one here
    configs = sorted(Path(output_dir).glob("config_*.json"), key=lambda p: p.stat().st_mtime)

    def log_model_and_config(_: Engine) -> None:
        # every epoch, after validation has saved a new best model: MLFlowHandler closes the run on COMPLETED
        # before a COMPLETED handler of ours could log, and a killed run keeps its best model this way
        log_if_changed(Path(model_file), "model")
        if configs:
            log_if_changed(configs[-1], "config")

    evaluator.add_event_handler(Events.EPOCH_COMPLETED, log_samples)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, log_model_and_config)
    return True
