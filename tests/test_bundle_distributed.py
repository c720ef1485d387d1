"""multi_gpu_train.json and multi_gpu_evaluate.json: two CPU processes (gloo) under torchrun, the way users launch
them on GPUs; rank 0 alone logs and writes.

Each launch is its own world, cut off from any other distributed run on the machine (a second CI run, a user's
training under torchrun): a standalone c10d rendezvous on a port the OS picks when it binds it (no fixed 29500, no
free port looked up first and bound later), a fresh rendezvous id, the master address and gloo's sockets on the
loopback (not whatever the host name resolves to), and no rendezvous or rank variables inherited from the shell.
A rank that dies in native code dumps every thread's Python stack (PYTHONFAULTHANDLER), and a failed launch reports
each rank's last lines and torchrun's own summary. This test's one intermittent failure, traced from core dumps of
the abort: rank 1, done first, aborted in interpreter shutdown (``terminate called without an active exception``)
because a gloo worker thread released the last all-gather's tensors only then and could not take the GIL; the configs'
finalize now ends the run with ``mmif_monai.engines.end_process_group`` (docs/bundle_workflows.md, "Multi-GPU")."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmif_monai.networks import MMIFNet
from mmif_monai.networks.pretrained import read_checkpoint

# starts torchrun with two processes: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "mmif_net"


@pytest.mark.parametrize(("local_rank", "rank"), [("0", "0"), ("1", "3")])
def test_each_process_takes_the_gpu_of_its_local_rank_not_its_global_rank(monkeypatch, local_rank, rank):
    # on the second node of two with two GPUs each, global rank 3 is local rank 1: it must use cuda:1
    from monai.bundle import ConfigParser

    monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    parser = ConfigParser()
    parser.read_config([BUNDLE / "configs" / "train.json", BUNDLE / "configs" / "multi_gpu_train.json"])
    assert parser.get_parsed_content("device") == torch.device(f"cuda:{local_rank}")


@pytest.mark.parametrize(
    "configs", [["train.json", "multi_gpu_train.json"], ["train.json", "evaluate.json", "multi_gpu_evaluate.json"]]
)
def test_each_rank_ends_its_run_with_the_library_s_end_of_process_group(monkeypatch, configs):
    from monai.bundle import ConfigParser

    import mmif_monai.engines

    calls = []
    monkeypatch.setattr(mmif_monai.engines, "end_process_group", lambda: calls.append("end"))
    parser = ConfigParser()
    parser.read_config([BUNDLE / "configs" / name for name in configs])
    parser.get_parsed_content("finalize")
    assert calls == ["end"]


def test_ending_a_process_group_waits_for_the_other_ranks_then_gives_gloo_s_threads_time(monkeypatch):
    # a rank that tears down first can abort in interpreter shutdown (mmif_monai.engines.distributed's docstring)
    from mmif_monai.engines import distributed

    calls = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(distributed.time, "sleep", lambda seconds: calls.append(("sleep", seconds)))
    distributed.end_process_group()
    assert calls == ["barrier", "destroy", ("sleep", distributed.SETTLE_SECONDS)]


def test_ending_a_one_process_run_without_a_process_group_does_nothing(monkeypatch):
    from mmif_monai.engines import distributed

    monkeypatch.setattr(distributed.time, "sleep", lambda seconds: pytest.fail("slept without a process group"))
    distributed.end_process_group()  # no group initialised: no barrier (it would raise), no sleep
    assert not torch.distributed.is_initialized()


# what a launch must not inherit: torchrun reads its options from PET_* variables, the workers their rank and
# rendezvous from these (set by a surrounding torchrun, or exported for a user's own run)
_DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK")
_DISTRIBUTED_PREFIXES = ("PET_", "TORCHELASTIC_", "TORCH_ELASTIC_")


def _launch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED_ENV and not k.startswith(_DISTRIBUTED_PREFIXES)}
    env["PYTHONFAULTHANDLER"] = "1"  # a native abort prints every thread's Python stack into the rank's log
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's pair sockets on the loopback, both ranks being on this machine
    return env


def _torchrun(entry: str, configs: list[str], *overrides: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
        "--nproc_per_node", "2", "--tee", "3",
        "-m", "monai.bundle", "run", entry,
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str([str(BUNDLE / "configs" / name) for name in configs]),
        "--dataset_dir", str(ROOT / "data" / "samples"),
        "--validation_cases", "[37]",
        "--num_workers", "0",
        *overrides,
    ]  # fmt: skip
    # the run itself takes 20-60 s; 900 s leaves room for a CI machine shared with another job without letting a
    # hung rendezvous or collective stall the suite (gloo's own collective timeout is 30 minutes)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_launch_env(), timeout=900)


def _rank_lines(log: str, rank: int) -> list[str]:
    """The lines rank ``rank`` printed: torchrun's --tee prefixes each with [default<rank>]."""
    return [line for line in log.splitlines() if line.startswith(f"[default{rank}]")]


def _failure(log: str) -> str:
    """What a failed launch said: each rank's last lines, then torchrun's own lines (its summary names the rank that
    failed first and its exit code)."""
    ranks = [f"--- rank {rank}:\n" + "\n".join(_rank_lines(log, rank)[-30:]) for rank in (0, 1)]
    launcher = [line for line in log.splitlines() if not line.startswith("[default")]
    return "\n".join([*ranks, "--- torchrun:", *launcher[-30:]])


def _assert_rank1_quiet(log: str) -> None:
    # MONAI echoes the run's arguments on every rank before the config is read; after that rank 1 says nothing
    launch = re.compile(r" - INFO - (> |---|Setting logging properties)")
    chatter = [line for line in _rank_lines(log, 1) if " - INFO - " in line and not launch.search(line)]
    assert not chatter, chatter[:5]
    assert _rank_lines(log, 1), "rank 1's output is missing: is torchrun still run with --tee 3?"


def test_two_process_gloo_training_steps_in_step_with_rank_0_alone_logging(tmp_path):
    overrides = ["--ckpt_dir", str(tmp_path), "--epochs", "1", "--max_iterations_per_epoch", "2"]
    result = _torchrun("training", ["train.json", "multi_gpu_train.json"], *overrides, "--batch_size", "2",
                       "--crop_size", "[64, 64]")  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, _failure(log)
    # DDP's gradient all-reduce blocks until both ranks step, so rank 0 finishing its epoch means rank 1 stepped
    assert re.search(r"\[default0\]:.*Epoch: 1/1, Iter: 2/2 -- train_loss", log), log[-3000:]
    assert re.search(r"\[default0\]:.*val_qabf", log)
    _assert_rank1_quiet(log)
    # rank 0 alone wrote the checkpoint and the best model, a plain MMIF-Net state dict
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt", "model.pt"]
    _, shipped_network = read_checkpoint(BUNDLE / "models" / "model.pt")  # train.json's network records the same
    MMIFNet(**shipped_network).load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))


def _metrics(folder: Path) -> dict[str, float]:
    with open(folder / "metrics.csv") as f:
        return {row[0]: float(row[1]) for row in csv.reader(f)}


def test_two_process_evaluation_scores_the_split_once_like_one_process(tmp_path):
    result = _torchrun("evaluating", ["train.json", "evaluate.json", "multi_gpu_evaluate.json"],
                       "--output_dir", str(tmp_path / "ddp"))  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, _failure(log)
    _assert_rank1_quiet(log)
    single = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "evaluating", "--bundle_root", str(BUNDLE),
         "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
         "--config_file", str([str(BUNDLE / "configs" / name) for name in ("train.json", "evaluate.json")]),
         "--dataset_dir", str(ROOT / "data" / "samples"), "--validation_cases", "[37]", "--num_workers", "0",
         "--output_dir", str(tmp_path / "single")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    # each rank scored its half; the metrics gathered on rank 0 are the whole split's. Each rank fuses a batch of
    # another size than the single process, which runs other convolution kernels: their float32 rounding moves a few
    # fused pixels across an 8-bit level, and the histogram metrics (MI, VIF) by about 1e-5 of their value (measured:
    # 7.6e-6). A pair scored twice or missed would move the mean of these two pairs by far more than 1e-4 of it
    assert _metrics(tmp_path / "ddp") == pytest.approx(_metrics(tmp_path / "single"), rel=1e-4)
    with open(tmp_path / "ddp" / "val_qabf_raw.csv") as f:
        assert len(list(csv.DictReader(f))) == 2  # both validation pairs, one from each rank
    # one summary line, by rank 0, counting both ranks' pairs
    summaries = [line for line in log.splitlines() if re.search(r"\]:scored \d+ pairs? in ", line)]
    assert len(summaries) == 1 and summaries[0].startswith("[default0]:scored 2 pairs in "), summaries
