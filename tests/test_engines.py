import torch

from mmif_monai.engines import ReconstructionTask, image_items, latest_checkpoint
from mmif_monai.io.aanlib import list_pairs
from mmif_monai.fusion.samples import SAMPLES_DIR
from mmif_monai.losses import ReconstructionLoss
from mmif_monai.networks import MMIFNet


def test_reconstruction_task_equals_fusing_an_image_with_itself():
    torch.manual_seed(0)
    projection = torch.randn(256, 256) * 0.01
    net = MMIFNet(projection=projection, fa=False).eval()
    x = torch.rand(2, 1, 64, 80)
    with torch.no_grad():
        assert torch.allclose(ReconstructionTask(net)(x).clamp(0, 1), net(x, x), atol=1e-5)


def test_reconstruction_task_without_decomposition_is_the_autoencoder():
    net = MMIFNet(decompose=False).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(ReconstructionTask(net)(x), net.reconstruct(x))


def test_reconstruction_loss_is_zero_for_identical_images_and_grows_with_error():
    loss = ReconstructionLoss(ssim_weight=10.0)
    x = torch.rand(2, 1, 32, 32)
    assert float(loss(x, x)) < 1e-6
    assert float(loss(x, (x + 0.1).clamp(0, 1))) < float(loss(x, torch.rand_like(x)))


def test_image_items_lists_both_sources_of_every_pair():
    pairs = list_pairs(SAMPLES_DIR)
    items = image_items(pairs)
    assert len(items) == 2 * len(pairs)
    assert {"image": str(pairs[0].functional)} in items


def test_latest_checkpoint_picks_the_highest_epoch(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for epoch in (2, 10, 9):
        (tmp_path / f"checkpoint_epoch={epoch}.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=10.pt"
