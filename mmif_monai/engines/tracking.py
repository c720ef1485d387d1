"""MLflow tracking: what the bundle adds to MONAI's ``--tracking mlflow``, and evaluation runs.

Training: MONAI's tracking patch attaches ``MLFlowHandler`` to ``train#handlers`` and ``validate#handlers``;
those log losses, validation metrics and the executed config. :func:`attach_tracking_extras` finds the trainer's
handler in the parsed handler list and, only when tracking is on, logs through the same MLflow run: the
experiment parameters (at start), a grid of fused validation samples after every validation, and the best
model at the end. Samples come from the dataset folder the user trains on; parameters are config values, so
no patient identity can reach the run from here.

Evaluation: :func:`attach_evaluation_tracking_extras` adds the executed config to the run of the bundle's
``run evaluating --tracking mlflow`` (MONAI's handler logs the metrics and closes the run), and
:func:`log_evaluation_run` records one scoring of fused images (``mmif evaluate --tracking mlflow``,
e.g. a validation study on a site's own pairs) as an MLflow run: the mean and standard deviation of every
metric per method, the study's settings and tags, and the per-image CSV, table and plot as artifacts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler

__all__ = ["attach_evaluation_tracking_extras", "attach_tracking_extras", "log_evaluation_run"]


def _tracker(handlers: Sequence[Any] | None) -> MLFlowHandler | None:
    return next((h for h in handlers or () if isinstance(h, MLFlowHandler)), None)


def _save_samples(evaluator: Engine, trainer: Engine, samples_dir: Path, max_samples: int) -> Path | None:
    from mmif_monai.io.preview import save_preview_grid

    outputs: list[Any] = evaluator.state.output if isinstance(evaluator.state.output, list) else []
    batch: list[Any] = evaluator.state.batch if isinstance(evaluator.state.batch, list) else [{}] * len(outputs)
    rows, labels = [], []
    for output, item in list(zip(outputs, batch))[:max_samples]:
        image, pred = output["image"].detach().cpu(), output["pred"].detach().cpu()
        rows.append([image[:1], image[1:2], pred.clamp(0, 1)])
        labels.append(f"{item.get('pair_type', '')} {item.get('name', '')}".strip())
    if not rows:
        return None
    path = samples_dir / f"fused_epoch_{trainer.state.epoch:03d}.png"
    return save_preview_grid(rows, labels, ["anatomical", "functional (Y)", "fused"], path)


def _executed_config(output_dir: str | Path) -> Path | None:
    # MONAI writes the executed config to output_dir as config_<time>.json before the run; when output_dir is
    # overridden with a plain path its own handler loses track of the file, so the newest one is logged here
    configs = sorted(Path(output_dir).glob("config_*.json"), key=lambda p: p.stat().st_mtime)
    return configs[-1] if configs else None


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

    config = _executed_config(output_dir)

    def log_model_and_config(_: Engine) -> None:
        # every epoch, after validation has saved a new best model: MLFlowHandler closes the run on COMPLETED
        # before a COMPLETED handler of ours could log, and a killed run keeps its best model this way
        log_if_changed(Path(model_file), "model")
        if config is not None:
            log_if_changed(config, "config")

    evaluator.add_event_handler(Events.EPOCH_COMPLETED, log_samples)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, log_model_and_config)
    return True


def attach_evaluation_tracking_extras(
    evaluator: Engine,
    handlers: Sequence[Any] | None,
    output_dir: str | Path,
    params: Mapping[str, Any] | None = None,
) -> bool:
    """Log ``params`` and the executed config to the run of the evaluator's MLFlowHandler (``run evaluating
    --tracking mlflow``).

    ``params`` say what was scored, as run parameters a study can be searched by (the bundle gives the weights
    file and digest, data folder, pair types, split, image count and scoring protocol); the config has the rest.
    Returns whether tracking was on; without it nothing is attached.
    """
    tracker = _tracker(handlers)
    if tracker is None:
        return False
    tracker.experiment_param = {**(tracker.experiment_param or {}), **{k: str(v) for k, v in (params or {}).items()}}
    config = _executed_config(output_dir)

    def log_config(_: Engine) -> None:
        # at the epoch's end: the handler closes the run on COMPLETED
        if config is not None and tracker.cur_run is not None:
            tracker.client.log_artifact(tracker.cur_run.info.run_id, str(config), "config")

    evaluator.add_event_handler(Events.EPOCH_COMPLETED, log_config)
    return True


def log_evaluation_run(
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    artifacts: Sequence[str | Path],
    tracking_uri: str,
    experiment_name: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    artifact_location: str | None = None,
) -> str:
    """Record one evaluation as a finished MLflow run and return its id.

    Args:
        summary: ``{method: {metric: (mean, std)}}`` as :func:`mmif_monai.metrics.report.summarise` gives it;
            logged as ``<method>/<metric>`` (mean) and ``<method>/<metric>_std``. Undefined (NaN) values are
            left out.
        artifacts: files logged at the run's artifact root (e.g. ``metrics.csv``, ``metrics.md``, ``metrics.png``).
        tracking_uri: where the store is: ``sqlite:///path/mlruns.db``, a server's ``http://host:port``, ...
        experiment_name: created when it does not exist yet, with ``artifact_location`` (``None``: MLflow's default).
        params: the evaluation's settings (values logged as strings).
        tags: free-form labels of the study, e.g. site, reader, protocol version.
        run_name: the run's name in the MLflow UI (``None``: MLflow picks one).

    A failure while logging marks the run FAILED before the error propagates.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        experiment_id = client.create_experiment(experiment_name, artifact_location=artifact_location)
    else:
        experiment_id = experiment.experiment_id
    run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    try:
        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(f"{method}/{metric}{suffix}", value, timestamp, 0)
            for method, scores in summary.items()
            for metric, (mean, std) in scores.items()
            for suffix, value in (("", mean), ("_std", std))
            if not math.isnan(value)
        ]
        client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(key, str(value)) for key, value in (params or {}).items()],
            tags=[RunTag(key, str(value)) for key, value in (tags or {}).items()],
        )
        for path in artifacts:
            client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    return run_id
