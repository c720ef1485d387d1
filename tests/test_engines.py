import pytest
import torch

from mmif_monai.engines import FusionTask, ReconstructionTask, image_items, latest_checkpoint
from mmif_monai.io.aanlib import list_pairs
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.losses import FusionLoss, ReconstructionLoss, difference_correlation, gradient_magnitude
from mmif_monai.metrics.batched import sum_of_correlations_of_differences
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


def test_a_missing_data_set_folder_is_named_as_such(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere: data set folder not found"):
        list_pairs(tmp_path / "nowhere")


def test_latest_checkpoint_picks_the_highest_epoch(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for epoch in (2, 10, 9):
        (tmp_path / f"checkpoint_epoch={epoch}.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=10.pt"


def test_a_checkpoint_that_cannot_be_resumed_is_refused_in_one_line_naming_it_and_what_to_do(tmp_path):
    """check_resume_checkpoint (the bundle's training list, before the data load): a checkpoint saved by
    attach_checkpointing passes; another network's, another optimizer's (other trainable modules), a damaged
    newest one and a weights file without trainer state are refused with one line naming the file and what to do
    (issue #34, item 8)."""
    from ignite.engine import Engine

    from mmif_monai.engines import attach_checkpointing, check_resume_checkpoint

    network = MMIFNet()
    optimizer = torch.optim.Adam(network.parameters())
    assert check_resume_checkpoint(tmp_path, network, optimizer) is None  # nothing to resume from: a fresh start
    trainer = Engine(lambda engine, batch: None)
    attach_checkpointing(trainer, tmp_path, {"model": network, "optimizer": optimizer})
    trainer.run([0], max_epochs=1)
    saved = tmp_path / "checkpoint_epoch=1.pt"
    assert check_resume_checkpoint(tmp_path, network, optimizer) == saved

    def refusal(*args) -> str:
        with pytest.raises(SystemExit) as stop:
            check_resume_checkpoint(tmp_path, *args)
        return str(stop.value.code)

    other = refusal(MMIFNet(msl=False), optimizer)
    assert other.startswith(f"error: {saved}: not weights of this MMIF-Net configuration: missing ")
    assert other.endswith("; resume with the configuration that wrote it, or train into a new --ckpt_dir")
    fusions_only = torch.optim.Adam(network.fusions.parameters())
    groups = len(list(network.parameters())), len(list(network.fusions.parameters()))
    assert refusal(network, fusions_only) == (
        f"error: {saved}: its optimizer state is of another configuration (parameter groups of [{groups[0]}] tensors,"
        f" this run's optimizer has [{groups[1]}]: other trainable_modules?); resume with the configuration that wrote"
        " it, or train into a new --ckpt_dir"
    )
    newest = tmp_path / "checkpoint_epoch=2.pt"
    newest.write_bytes(saved.read_bytes()[:1000])  # a torn copy
    assert refusal(network, optimizer) == (
        f"error: {newest}: not a PyTorch weights file (neither torch.save's zip format nor a pickle); training resumes"
        " from the newest checkpoint in ckpt_dir: delete it to resume from checkpoint_epoch=1.pt, or train into a new"
        " --ckpt_dir"
    )
    torch.save(network.state_dict(), newest)  # weights, not a training checkpoint
    assert refusal(network, optimizer) == (
        f"error: {newest}: not a training checkpoint (no trainer state in it); delete it to resume from"
        " checkpoint_epoch=1.pt, or train into a new --ckpt_dir"
    )


def test_monais_own_tracking_write_failing_is_one_line_and_every_other_error_keeps_its_traceback():
    """mmif_monai.engines.monai_errors (imported by the bundle configs): an OSError raised inside MONAI's
    patch_bundle_tracking (its write of the executed config into output_dir) becomes one line naming the file;
    the same error raised elsewhere, and any other exception, are left to the previous hook (None here)."""
    import sys

    from mmif_monai.engines.monai_errors import tracking_write_error

    def patch_bundle_tracking():  # the name of MONAI's function, as the traceback shows it
        raise PermissionError(13, "Permission denied", "/ro/config_20260101_000000.json")

    def elsewhere():
        raise PermissionError(13, "Permission denied", "/ro/notes.txt")

    def caught(function):
        try:
            function()
        except Exception:
            return sys.exc_info()[1:]

    assert tracking_write_error(*caught(patch_bundle_tracking)) == (
        "error: cannot write /ro/config_20260101_000000.json: Permission denied; --tracking writes the executed config"
        " and the MLflow store into output_dir: give --output_dir a folder you can write"
    )
    assert tracking_write_error(*caught(elsewhere)) is None
    assert tracking_write_error(ValueError("not an OS error"), caught(patch_bundle_tracking)[1]) is None


def test_fusion_loss_prefers_the_brighter_sharper_source_over_either_source_alone():
    torch.manual_seed(0)
    sources = torch.zeros(1, 2, 48, 48)
    sources[:, 0, 8:24, 8:40] = 1.0  # "bone" only the first source shows
    sources[:, 1, 28:44, 8:40] = 0.8  # "uptake" only the second shows
    loss = FusionLoss()
    both = sources.amax(dim=1, keepdim=True)
    assert float(loss(both, sources)) < float(loss(sources[:, :1], sources))
    assert float(loss(both, sources)) < float(loss(sources[:, 1:], sources))
    assert float(loss(both, sources)) < float(loss(sources.mean(dim=1, keepdim=True), sources))


def test_fusion_loss_checks_shapes():
    with pytest.raises(ValueError, match="expected fused"):
        FusionLoss()(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16))


def test_difference_correlation_is_the_scd_metric_and_finite_on_flat_crops():
    torch.manual_seed(0)
    a, b = torch.rand(3, 1, 24, 24), torch.rand(3, 1, 24, 24)
    for fused in (torch.maximum(a, b), (a + b) / 2, 0.7 * a + 0.2 * b):
        torch.testing.assert_close(
            difference_correlation(fused, a, b).double(),
            sum_of_correlations_of_differences(fused, a, b),
            atol=1e-3,  # eps in the variance product
            rtol=0,
        )
    flat = torch.zeros(1, 1, 16, 16, requires_grad=True)
    scd = difference_correlation(flat, torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))
    scd.sum().backward()
    assert float(scd.detach()) == 0.0 and torch.isfinite(flat.grad).all()


def test_fusion_loss_correlation_term_prefers_keeping_both_sources_contrast():
    sources = torch.zeros(1, 2, 48, 48)
    sources[:, 0, 8:24, 8:40] = 1.0
    sources[:, 1, 20:44, 8:40] = 0.8
    only_correlation = FusionLoss(intensity_weight=0, gradient_weight=0, ssim_weight=0, correlation_weight=1)
    keeps_both = sources.sum(dim=1, keepdim=True)  # f - b = a, f - a = b: SCD = 2, the term's minimum 0
    assert float(only_correlation(keeps_both, sources)) == pytest.approx(0.0, abs=1e-4)
    assert float(only_correlation(sources.mean(dim=1, keepdim=True), sources)) > 0.1
    assert float(FusionLoss(correlation_weight=1)(keeps_both, sources)) > float(FusionLoss()(keeps_both, sources))
    with pytest.raises(ValueError, match="two sources"):
        only_correlation(keeps_both, torch.cat([sources, sources[:, :1]], dim=1))


def test_gradient_magnitude_is_sobel_l1_and_zero_on_flat_images():
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0
    magnitude = gradient_magnitude(step)[0, 0]
    assert (
        torch.all(magnitude[:, 3:5] == 4.0) and magnitude[:, :3].abs().sum() == 0 and magnitude[:, 5:].abs().sum() == 0
    )
    assert gradient_magnitude(torch.full((2, 3, 8, 8), 0.3)).abs().max() == 0


def test_fusion_task_trains_only_the_named_modules_and_keeps_the_rest_in_eval_mode():
    net = MMIFNet(fa=True)
    task = FusionTask(net, trainable=["fusions"]).train()
    trainable = {id(p) for p in task.trainable_parameters()}
    assert trainable == {id(p) for p in net.fusions.parameters()}
    assert not net.training and not net.stem.training and net.fusions.training
    sources = torch.rand(2, 2, 64, 64)
    FusionLoss()(task(sources), sources).backward()
    assert all(p.grad is None for p in net.stem.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.fusions.parameters())


def test_fusion_task_rejects_unknown_modules():
    with pytest.raises(ValueError, match="no submodule"):
        FusionTask(MMIFNet(), trainable=["encoder_that_does_not_exist"])


def test_log_evaluation_run_skips_undefined_values_and_marks_a_failed_run(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from mmif_monai.engines import log_evaluation_run

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    report = tmp_path / "metrics.md"
    report.write_text("| method | CC |\n")
    summary = {"max": {"VIF": (0.6, 0.1), "CC": (float("nan"), float("nan"))}}
    run_id = log_evaluation_run(summary, [report], uri, "study", artifact_location=(tmp_path / "art").as_uri())
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.metrics == {"max/VIF": 0.6, "max/VIF_std": 0.1} and run.info.status == "FINISHED"
    assert (tmp_path / "art" / run_id / "artifacts" / "metrics.md").read_text() == "| method | CC |\n"
    # an artifact that cannot be logged fails the call and leaves the run marked FAILED, not running
    with pytest.raises(OSError):
        log_evaluation_run(summary, [tmp_path / "missing.csv"], uri, "study")
    runs = client.search_runs([client.get_experiment_by_name("study").experiment_id], order_by=["start_time DESC"])
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]


def test_a_run_ends_with_one_line_counting_the_data_set_with_its_metrics_and_output(capsys):
    from ignite.engine import Engine, Events
    from torch.utils.data import DataLoader

    from mmif_monai.engines import print_run_summary

    engine = Engine(lambda engine, batch: None)
    scores = {"val_qabf": 0.123456, "VIF": 1.0}
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(scores))
    engine.run(DataLoader(list(range(5)), batch_size=2))  # five items in three batches
    print_run_summary(engine, "scored", "pair", "out/eval", ["val_qabf", "VIF", "absent"])
    line = capsys.readouterr().out
    seconds = engine.state.times["COMPLETED"]
    assert line == f"scored 5 pairs in {seconds:.1f} s: val_qabf 0.1235, VIF 1.0000 -> out/eval\n"
