"""multi_gpu_train.json: two CPU processes (gloo) under torchrun train in step, the way users launch it on GPUs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmif_monai.networks import MMIFNet

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


def test_two_process_gloo_training_steps_on_both_ranks(tmp_path):
    configs = [str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "multi_gpu_train.json")]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--tee", "3",
        "-m", "monai.bundle", "run", "training",
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str(configs),
        "--dataset_dir", str(ROOT / "data" / "samples"),
        "--validation_cases", "[37]",
        "--ckpt_dir", str(tmp_path),
        "--epochs", "1",
        "--max_iterations_per_epoch", "2",
        "--batch_size", "2",
        "--crop_size", "[64, 64]",
        "--num_workers", "0",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    for rank in (0, 1):  # torchrun's --tee prefixes each rank's lines with [default<rank>]
        assert re.search(rf"\[default{rank}\]:.*Epoch: 1/1, Iter: 2/2 -- train_loss", log), f"rank {rank} did not step"
        assert re.search(rf"\[default{rank}\]:.*val_qabf", log), f"rank {rank} did not validate"
    # rank 0 alone wrote the checkpoint and the best model, a plain MMIF-Net state dict
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt", "model.pt"]
    MMIFNet().load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
