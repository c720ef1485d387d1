"""Training survives a kill: SIGKILL the bundle's training mid-epoch, start it again, and it resumes from the
last per-epoch checkpoint (losing only the epoch in progress) and finishes.

Tiny on purpose: 32x32 crops, 10 iterations an epoch, two epochs, no validation run, one torch thread (on a
shared CPU more threads only contend); what is tested is the checkpoint mechanism, not learning.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from mmif_monai.engines import BestModelSaver, attach_checkpointing, latest_checkpoint

# kills and restarts bundle training: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "mmif_net"
ITERATIONS_PER_EPOCH = 10
EPOCHS = 2


def _training_command(ckpt_dir: Path, output_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str(BUNDLE / "configs" / "train.json"),
        "--dataset_dir", str(ROOT / "data" / "samples"),
        "--validation_cases", "[37]",
        "--ckpt_dir", str(ckpt_dir),
        "--output_dir", str(output_dir),
        "--epochs", str(EPOCHS),
        "--val_interval", str(EPOCHS + 1),
        "--max_iterations_per_epoch", str(ITERATIONS_PER_EPOCH),
        "--batch_size", "2",
        "--crop_size", "[32, 32]",
        "--num_workers", "0",
    ]  # fmt: skip


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _checkpoints(ckpt_dir: Path) -> dict[int, dict]:
    return {
        int(path.stem.rsplit("=", 1)[-1]): torch.load(path, weights_only=True)
        for path in ckpt_dir.glob("checkpoint_epoch=*.pt")
    }


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
            if f"Epoch: {epoch}/{EPOCHS}, Iter: 1/" in line:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        process.kill()
        process.stdout.close()
        status = process.wait(timeout=60)
    return status, "".join(log)


def test_training_killed_mid_epoch_resumes_from_its_last_checkpoint(tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    command = _training_command(ckpt, out)

    status, log = _run_until_killed_in_epoch(command, epoch=2)
    assert status == -signal.SIGKILL, log[-3000:]
    # killed inside epoch 2: epoch 1's checkpoint is there, complete and loadable; epoch 2's is not
    saved = _checkpoints(ckpt)
    assert list(saved) == [1], log[-3000:]
    # Ignite stores progress as the iteration count: one epoch done
    assert saved[1]["trainer"]["iteration"] == ITERATIONS_PER_EPOCH

    resumed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=_environment(), timeout=300)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    # restored from epoch 1's checkpoint, so only the interrupted epoch is trained again
    assert f"Restored all variables from {ckpt / 'checkpoint_epoch=1.pt'}" in log
    assert f"Epoch: 1/{EPOCHS}," not in log
    assert f"Epoch: 2/{EPOCHS}, Iter: {ITERATIONS_PER_EPOCH}/{ITERATIONS_PER_EPOCH}" in log
    saved = _checkpoints(ckpt)
    assert max(saved) == 2
    assert saved[2]["trainer"]["iteration"] == EPOCHS * ITERATIONS_PER_EPOCH


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
