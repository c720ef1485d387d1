"""Training survives a kill: SIGKILL the bundle's training mid-epoch, start it again, and it resumes from the
last per-epoch checkpoint (losing only the epoch in progress) and finishes as an uninterrupted run would.

Tiny on purpose: 32x32 crops, 10 iterations an epoch, a few epochs, one torch thread (on a shared CPU more
threads only contend); what is tested is the checkpoint mechanism, not learning. Two sets of runs, each shared
by the tests that read it: stage 1 training without validation, killed in its last epoch, rerun, then rerun with
more epochs (the checkpoint files kept, the cosine schedule); and a network that cannot change, validated after
every epoch, run uninterrupted and killed and rerun (the best key metric, early stopping).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine, Events

from mmif_monai.engines import BestModelSaver, attach_checkpointing, latest_checkpoint

# kills and restarts bundle training: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "mmif_net"
ITERATIONS_PER_EPOCH = 10
EPOCHS = 3
LONGER_EPOCHS = 5
LEARNING_RATE = 0.002
PATIENCE = 2
# learning rate 0 and batch-norm statistics that never move: the validation score is the same every epoch
FROZEN_NETWORK = {
    "learning_rate": 0,
    "network": "$@network_def.to(@device).apply("
    "lambda m: setattr(m, 'momentum', 0.0) if isinstance(m, torch.nn.BatchNorm2d) else None)",
}


def _training_command(ckpt_dir: Path, output_dir: Path, **options: object) -> list[str]:
    """The bundle's training on the sample pairs, without validation; ``options`` add or replace bundle options."""
    options = {
        "dataset_dir": ROOT / "data" / "samples",
        "validation_cases": "[37]",
        "ckpt_dir": ckpt_dir,
        "output_dir": output_dir,
        "epochs": EPOCHS,
        "val_interval": 1000,
        "max_iterations_per_epoch": ITERATIONS_PER_EPOCH,
        "batch_size": 2,
        "crop_size": "[32, 32]",
        "num_workers": 0,
        **options,
    }
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str(BUNDLE / "configs" / "train.json"),
    ]  # fmt: skip
    for name, value in options.items():
        command += [f"--{name}", str(value)]
    return command


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _checkpoints(ckpt_dir: Path) -> dict[int, dict]:
    return {
        int(path.stem.rsplit("=", 1)[-1]): torch.load(path, weights_only=True)
        for path in ckpt_dir.glob("checkpoint_epoch=*.pt")
    }


def _run(command: list[str]) -> str:
    """Run ``command`` to its end; its log."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=_environment(), timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    return log


def _run_until_killed_in_epoch(command: list[str], epoch: int, timeout: float = 300) -> tuple[int, str]:
    """Start ``command``, SIGKILL it as soon as it logs its first iteration of ``epoch``; (exit status, log)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=_environment()
    )
    watchdog = threading.Timer(timeout, process.kill)  # a hung run must not hang the test suite
    watchdog.start()
    log = []
    try:
        for line in process.stdout:
            log.append(line)
            if re.search(rf"Epoch: {epoch}/\d+, Iter: 1/", line):
                process.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        process.kill()
        process.stdout.close()
        status = process.wait(timeout=60)
    return status, "".join(log)


def _trained_epochs(log: str) -> list[int]:
    return sorted({int(epoch) for epoch in re.findall(r"Epoch: (\d+)/\d+, Iter: ", log)})


def _best_metric_lines(log: str) -> list[tuple[str, int]]:
    """MONAI's StatsHandler's report of the evaluator's best key metric after each validation: (value, epoch)."""
    return [
        (value, int(epoch))
        for value, epoch in re.findall(r"Key metric: val_qabf best value: (\S+) at epoch: (\d+)", log)
    ]


def _parameters(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's learned tensors (weights and biases), not its batch-norm statistics."""
    return {k: v for k, v in checkpoint["model"].items() if k.rsplit(".", 1)[-1] in ("weight", "bias")}


def _cosine_lr(epoch: int, epochs: int) -> float:
    return LEARNING_RATE * (1 + math.cos(math.pi * epoch / epochs)) / 2


@pytest.fixture(scope="module")
def learning_runs(tmp_path_factory) -> SimpleNamespace:
    """Stage 1 training killed in its last epoch, the same command again, then the command with more epochs."""
    tmp = tmp_path_factory.mktemp("learning")
    ckpt = tmp / "ckpt"
    command = _training_command(ckpt, tmp / "out", learning_rate=LEARNING_RATE)
    status, killed_log = _run_until_killed_in_epoch(command, epoch=EPOCHS)
    assert status == -signal.SIGKILL, killed_log[-3000:]
    after_kill = _checkpoints(ckpt)
    resumed_log = _run(command)
    after_resume = _checkpoints(ckpt)
    longer_log = _run(_training_command(ckpt, tmp / "out", learning_rate=LEARNING_RATE, epochs=LONGER_EPOCHS))
    return SimpleNamespace(
        ckpt=ckpt,
        killed_log=killed_log,
        after_kill=after_kill,
        resumed_log=resumed_log,
        after_resume=after_resume,
        longer_log=longer_log,
        after_longer=_checkpoints(ckpt),
    )


@pytest.fixture(scope="module")
def frozen_runs(tmp_path_factory) -> SimpleNamespace:
    """A network that cannot change, validated after every epoch and stopped early with patience ``PATIENCE``:
    every validation scores the same, so only the first is a best and an uninterrupted run stops after epoch
    ``PATIENCE + 1``. Run once uninterrupted, and once killed in that epoch and run again."""
    tmp = tmp_path_factory.mktemp("frozen")
    options = {**FROZEN_NETWORK, "epochs": 6, "val_interval": 1, "early_stop_patience": PATIENCE}
    uninterrupted_log = _run(_training_command(tmp / "whole", tmp / "whole_out", **options))
    ckpt = tmp / "ckpt"
    command = _training_command(ckpt, tmp / "out", **options)
    status, killed_log = _run_until_killed_in_epoch(command, epoch=PATIENCE + 1)
    assert status == -signal.SIGKILL, killed_log[-3000:]
    best_model = (ckpt / "model.pt").stat()
    resumed_log = _run(command)
    return SimpleNamespace(
        ckpt=ckpt,
        uninterrupted_log=uninterrupted_log,
        killed_log=killed_log,
        resumed_log=resumed_log,
        best_model_before=best_model,
        best_model_after=(ckpt / "model.pt").stat(),
    )


def test_training_killed_mid_epoch_resumes_from_its_last_checkpoint(learning_runs):
    runs = learning_runs
    # killed inside the last epoch: the checkpoints before it are there, complete and loadable; its own is not
    assert sorted(runs.after_kill) == [EPOCHS - 2, EPOCHS - 1], runs.killed_log[-3000:]
    # Ignite stores progress as the iteration count
    assert runs.after_kill[EPOCHS - 1]["trainer"]["iteration"] == (EPOCHS - 1) * ITERATIONS_PER_EPOCH
    # restored from the last complete checkpoint, so only the interrupted epoch is trained again
    assert f"Restored all variables from {runs.ckpt / f'checkpoint_epoch={EPOCHS - 1}.pt'}" in runs.resumed_log
    assert _trained_epochs(runs.resumed_log) == [EPOCHS]
    assert f"Epoch: {EPOCHS}/{EPOCHS}, Iter: {ITERATIONS_PER_EPOCH}/{ITERATIONS_PER_EPOCH}" in runs.resumed_log
    assert max(runs.after_resume) == EPOCHS
    assert runs.after_resume[EPOCHS]["trainer"]["iteration"] == EPOCHS * ITERATIONS_PER_EPOCH


def test_a_resumed_run_keeps_n_saved_checkpoints(learning_runs):
    # the saver's list of the files it wrote is in the checkpoint, so the rerun deletes the killed run's oldest
    runs = learning_runs
    assert sorted(runs.after_resume) == [EPOCHS - 1, EPOCHS]
    assert sorted(runs.after_longer) == [LONGER_EPOCHS - 1, LONGER_EPOCHS]
    assert sorted(p.name for p in runs.ckpt.glob("checkpoint_epoch=*.pt")) == [
        f"checkpoint_epoch={LONGER_EPOCHS - 1}.pt",
        f"checkpoint_epoch={LONGER_EPOCHS}.pt",
    ]


def test_a_rerun_with_more_epochs_stretches_the_cosine_schedule_to_its_new_end(learning_runs):
    runs = learning_runs
    finished = runs.after_resume[EPOCHS]
    # the first run's schedule ended at its minimum, 0; the rerun resumes from its last checkpoint
    assert finished["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0, abs=1e-12)
    assert f"Restored all variables from {runs.ckpt / f'checkpoint_epoch={EPOCHS}.pt'}" in runs.longer_log
    assert _trained_epochs(runs.longer_log) == list(range(EPOCHS + 1, LONGER_EPOCHS + 1))
    stretched = re.findall(r"lr_scheduler: cosine schedule stretched .*", runs.longer_log)
    assert stretched == [
        f"lr_scheduler: cosine schedule stretched from the checkpoint's T_max={EPOCHS} to the configured "
        f"T_max={LONGER_EPOCHS}; learning rate {_cosine_lr(EPOCHS, LONGER_EPOCHS):g} at epoch {EPOCHS}"
    ]
    # each new epoch trains at a learning rate above 0: the network changes in both
    new = [_parameters(finished)] + [_parameters(runs.after_longer[e]) for e in range(EPOCHS + 1, LONGER_EPOCHS + 1)]
    for before, after in zip(new, new[1:]):
        assert any(not torch.equal(before[k], after[k]) for k in before)
    # and the rates follow the cosine over the new number of epochs, down to its minimum at the last one
    for epoch in range(EPOCHS + 1, LONGER_EPOCHS + 1):
        saved = runs.after_longer[epoch]
        assert saved["lr_scheduler"]["T_max"] == LONGER_EPOCHS
        lr = saved["optimizer"]["param_groups"][0]["lr"]
        assert lr == pytest.approx(_cosine_lr(epoch, LONGER_EPOCHS), rel=1e-9, abs=1e-12)
    assert runs.after_longer[LONGER_EPOCHS]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0, abs=1e-12)


def test_a_resumed_run_keeps_the_evaluators_best_metric(frozen_runs):
    runs = frozen_runs
    logs = [runs.uninterrupted_log, runs.killed_log, runs.resumed_log]
    # the premise: every validation of every run scores the same
    scores = {score for log in logs for score in re.findall(r"Metrics -- .*val_qabf: (\S+)", log)}
    assert len(scores) == 1, scores
    # the best is epoch 1's in every report, after the restart too, as in the uninterrupted run
    uninterrupted = _best_metric_lines(runs.uninterrupted_log)
    assert [epoch for _, epoch in uninterrupted] == [1] * (PATIENCE + 1)
    assert _best_metric_lines(runs.killed_log) + _best_metric_lines(runs.resumed_log) == uninterrupted
    assert "Got new best metric" not in runs.resumed_log
    # a score no better than the kept best does not replace the best model
    before, after = runs.best_model_before, runs.best_model_after
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_resumed_run_stops_early_at_the_epoch_an_uninterrupted_run_stops(frozen_runs):
    runs = frozen_runs
    stop = PATIENCE + 1
    assert _trained_epochs(runs.uninterrupted_log)[-1] == stop  # early stopping ended it, not the 6 epochs
    assert _trained_epochs(runs.killed_log)[-1] == stop
    # the patience count went on from the killed run's: its validation in epoch PATIENCE + 1 stops it again
    assert _trained_epochs(runs.resumed_log) == [stop]
    assert "EarlyStopping: Stop training" in runs.resumed_log
    assert max(_checkpoints(runs.ckpt)) == stop


def test_a_crash_while_saving_a_checkpoint_keeps_the_previous_one_whole(tmp_path, monkeypatch):
    """The window a kill-timed test rarely hits: the process dies while epoch 2's checkpoint is being written."""
    network = torch.nn.Linear(2, 1)
    trainer = Engine(lambda engine, batch: None)
    attach_checkpointing(trainer, tmp_path, {"model": network})
    trainer.run([0, 1], max_epochs=1)
    saved = tmp_path / "checkpoint_epoch=1.pt"
    assert torch.load(saved, weights_only=True)["trainer"]["iteration"] == 2
    real_save = torch.save

    def dies_half_way(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(16) if hasattr(file, "truncate") else Path(file).write_bytes(b"PK\x03\x04 cut short")
        raise KeyboardInterrupt  # a kill: nothing after this line of the saver runs

    monkeypatch.setattr(torch, "save", dies_half_way)
    resumed = Engine(lambda engine, batch: None)
    assert attach_checkpointing(resumed, tmp_path, {"model": network}) == saved
    with pytest.raises(KeyboardInterrupt):
        resumed.run([0, 1], max_epochs=2)
    monkeypatch.undo()
    # the next start resumes from a complete checkpoint: epoch 1's, untouched; no torn epoch-2 file in its way
    assert latest_checkpoint(tmp_path) == saved
    assert torch.load(saved, weights_only=True)["trainer"]["iteration"] == 2


def _validate(saver: BestModelSaver, network: torch.nn.Linear, weight: float, score: float) -> None:
    """One validation run that gives ``network`` the weight ``weight`` and the key metric ``score``."""
    evaluator = Engine(lambda engine, batch: None)

    @evaluator.on(Events.EPOCH_COMPLETED)  # registered before the saver, as MONAI's metric handlers are
    def _score(engine):
        engine.state.key_metric_name = "val_qabf"
        engine.state.metrics = {"val_qabf": score}

    saver.attach(evaluator)
    with torch.no_grad():
        network.weight.fill_(weight)
    evaluator.run([0], max_epochs=1)


def _saved_weight(path: Path) -> float:
    return float(torch.load(path, weights_only=True)["weight"].flatten()[0])


def test_best_model_saver_keeps_the_best_scoring_network_with_normal_file_permissions(tmp_path):
    network = torch.nn.Linear(2, 1)
    saver = BestModelSaver(tmp_path, network)
    kept = []
    for weight, score in [(1.0, 0.5), (2.0, 0.3), (3.0, 0.7), (4.0, 0.6)]:
        _validate(saver, network, weight, score)
        kept.append(_saved_weight(tmp_path / "model.pt"))
    assert kept == [1.0, 1.0, 3.0, 3.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_resumed_best_model_saver_keeps_the_earlier_best(tmp_path):
    network = torch.nn.Linear(2, 1)
    first = BestModelSaver(tmp_path, network)
    _validate(first, network, 1.0, 0.5)
    resumed = BestModelSaver(tmp_path, network)
    resumed.load_state_dict(first.state_dict())
    _validate(resumed, network, 2.0, 0.3)  # worse than before the restart: the earlier best stays
    assert _saved_weight(tmp_path / "model.pt") == 1.0
    _validate(resumed, network, 3.0, 0.6)
    assert _saved_weight(tmp_path / "model.pt") == 3.0


def test_a_crash_while_saving_the_best_model_keeps_the_previous_one_whole(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 1)
    saver = BestModelSaver(tmp_path, network)
    _validate(saver, network, 1.0, 0.5)
    real_save = torch.save

    def dies_half_way(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        Path(file).write_bytes(b"PK\x03\x04 cut short")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        _validate(saver, network, 2.0, 0.9)
    monkeypatch.undo()
    assert _saved_weight(tmp_path / "model.pt") == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_checkpoint_of_an_earlier_version_resumes_with_the_newer_entries_afresh(tmp_path, caplog):
    network = torch.nn.Linear(2, 1)
    earlier = Engine(lambda engine, batch: None)
    earlier.run([0, 1], max_epochs=1)
    # as the bundle wrote them before the early-stop count and the saver's file list were checkpointed
    torch.save({"model": network.state_dict(), "trainer": earlier.state_dict()}, tmp_path / "checkpoint_epoch=1.pt")
    early_stop = torch.nn.Module()  # stands for any newer entry with a state_dict
    resumed = Engine(lambda engine, batch: None)
    with caplog.at_level("INFO", logger="mmif_monai.engines.checkpoints"):
        attach_checkpointing(resumed, tmp_path, {"model": network, "early_stop": early_stop})
        resumed.run([0, 1], max_epochs=2)
    assert "checkpoint_epoch=1.pt has no checkpointer, early_stop; starting those afresh" in caplog.text
    assert resumed.state.epoch == 2 and resumed.state.iteration == 4  # epoch 1 was not trained again
    assert sorted(p.name for p in tmp_path.glob("checkpoint_epoch=*.pt")) == [
        "checkpoint_epoch=1.pt",
        "checkpoint_epoch=2.pt",
    ]
