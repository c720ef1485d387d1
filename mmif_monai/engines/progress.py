"""The last line of a bundle workflow's run: what it did, how long it took and where the results are.

The bundle's inference and evaluation show Ignite's ``ProgressBar`` while they run. The bar is tqdm's, drawn on a
terminal only (``"disable": null`` in the configs), since in a pipe or a log file its redrawn line is noise; a run
whose output goes to a log shows its log lines only. Either way the workflow ends with :func:`print_run_summary`,
one plain line after the engine's own log, e.g. ``fused 6 pairs in 9.3 s -> outputs/mmif_net/inference``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist
from ignite.engine import Engine, Events

__all__ = ["run_summary", "print_run_summary"]


def run_summary(
    engine: Engine,
    verb: str = "fused",
    unit: str = "pair",
    output: str | Path | None = None,
    metrics: Sequence[str] = (),
) -> str:
    """``<verb> <count> <unit>s in <seconds> s``, the ``metrics`` of ``engine.state.metrics`` (4 decimals) and
    ``-> <output>``, for an engine whose run has completed, e.g. ``scored 170 pairs in 95.2 s: val_qabf 0.7524,
    VIF 0.8564 -> outputs/mmif_net/evaluation``.

    The count is the size of the data set the run went through (every process's share of a distributed run); the
    time is Ignite's for the whole run, its handlers included.
    """
    loader = engine.state.dataloader
    count = len(loader.dataset) if loader is not None and hasattr(loader, "dataset") else engine.state.iteration
    seconds = engine.state.times.get(Events.COMPLETED.name) or 0.0
    text = f"{verb} {count} {unit}{'' if count == 1 else 's'} in {seconds:.1f} s"
    scores = [f"{name} {engine.state.metrics[name]:.4f}" for name in metrics if name in engine.state.metrics]
    if scores:
        text += ": " + ", ".join(scores)
    return text + (f" -> {output}" if output is not None else "")


def print_run_summary(
    engine: Engine,
    verb: str = "fused",
    unit: str = "pair",
    output: str | Path | None = None,
    metrics: Sequence[str] = (),
) -> None:
    """Print :func:`run_summary`, flushed (also into a pipe or a log file); in a distributed run, on the first
    process only."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0):
        print(run_summary(engine, verb, unit, output, metrics), flush=True)
