"""Tests of the fusion metrics: hand-computable values, invariants, the two code paths, the numpy reference,
scikit-image's SSIM, the MONAI/Ignite integration and the folder report."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import IgniteMetricHandler, from_engine
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

import mmif_monai.metrics as M
from oracles import published_reference_metrics, reference_metrics

AANLIB = Path("/work/shared/data/aanlib")
FUNCTIONAL = {"EN": M.en, "SD": M.sd, "SF": M.sf, "AG": M.ag}
WITH_SOURCES = {
    "MI": M.mi,
    "SCD": M.scd,
    "VIF": M.vif,
    "Qabf": M.qabf,
    "SSIM": M.ssim,
    "PSNR": M.psnr,
    "CC": M.cc,
}
# Qabf of a perfect copy: both sigmoids at relative strength 1 and relative orientation 1.
QABF_OF_COPY = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))


def random_image(rng: np.random.Generator, size: int, smoothing: float = 2.0) -> np.ndarray:
    """8-bit grey image: smoothed noise stretched to 0..255 with a bright disc (strong edges) and a dark corner."""
    img = gaussian_filter(rng.random((size, size)), smoothing) if smoothing > 0 else rng.random((size, size))
    img = (img - img.min()) / (img.max() - img.min()) * 200
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = rng.uniform(size * 0.3, size * 0.7, 2).tolist() + [size * rng.uniform(0.1, 0.25)]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 255
    img[: size // 5, : size // 5] = 0  # flat region, as the black background of brain slices
    return np.round(img)


def make_triplet(seed: int, size: int = 64, smoothing: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fused, a, b): two random sources and a weighted average, stretched like a fused image."""
    rng = np.random.default_rng(seed)
    a, b = random_image(rng, size, smoothing), random_image(rng, size, smoothing)
    w = rng.uniform(0.2, 0.8)
    return M.stretch_to_uint8_range(w * a + (1 - w) * b), a, b


def as_batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)[:, None])


def score(name: str, f: np.ndarray, a: np.ndarray, b: np.ndarray, **kwargs) -> float:
    return FUNCTIONAL[name](f) if name in FUNCTIONAL else WITH_SOURCES[name](f, a, b, **kwargs)


# ----- hand-computable values -----


def test_constant_image_has_no_information_contrast_or_detail():
    flat = np.full((32, 32), 77.0)
    for name in FUNCTIONAL:
        assert score(name, flat, flat, flat) == 0.0, name


def test_two_level_half_half_image():
    width = 8
    img = np.zeros((8, width))
    img[:, width // 2 :] = 255
    assert M.en(img) == pytest.approx(1.0)  # two equally likely levels: one bit
    assert M.sd(img) == pytest.approx(127.5)
    # one jump of 255 among the W - 1 horizontal neighbour differences of every row, none vertically
    assert M.sf(img) == pytest.approx(255 / math.sqrt(width - 1))
    # central differences see the jump as 255/2 in the two columns next to it
    assert M.ag(img) == pytest.approx(255 / (math.sqrt(2) * width))


def test_identical_images():
    _, x, _ = make_triplet(0)
    assert M.mi(x, x, x) == pytest.approx(2 * M.en(x), rel=1e-12)
    for protocol in M.SSIM_PROTOCOLS:
        assert M.ssim(x, x, x, protocol=protocol) == pytest.approx(2.0, abs=1e-12)  # 1 per source
    assert M.cc(x, x, x) == pytest.approx(1.0, abs=1e-12)
    assert M.vif(x, x, x) == pytest.approx(2.0, abs=1e-6)
    assert M.qabf(x, x, x) == pytest.approx(QABF_OF_COPY, rel=1e-12)
    assert M.psnr(x, x, x) == math.inf


# ----- invariants -----


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), smoothing=st.sampled_from([0.0, 1.0, 3.0]))
def test_sources_are_interchangeable_and_bounds_hold(seed, smoothing):
    f, a, b = (as_batch([x]) for x in make_triplet(seed, size=48, smoothing=smoothing))
    v = {name: float(t[0]) for name, t in M.batched_metrics(f, a, b).items()}
    swapped = M.batched_metrics(f, b, a, names=list(WITH_SOURCES))
    for name, value in swapped.items():
        assert float(value[0]) == pytest.approx(v[name], rel=1e-12), name
    assert 0 <= v["EN"] <= 8
    assert 0 <= v["Qabf"] <= 1
    # MI(F, S) is at most min(H(F), H(S)) for each source
    en_sources = M.batched_metrics(torch.cat([a, b]), names=["EN"])["EN"].sum().item()
    assert 0 <= v["MI"] <= min(2 * v["EN"], en_sources) + 1e-9
    assert -1 <= v["CC"] <= 1
    assert v["SSIM"] <= 2
    assert v["SD"] >= 0 and v["SF"] >= 0 and v["AG"] >= 0 and v["VIF"] >= 0


# ----- the two code paths and the references -----


def test_functional_numpy_path_matches_batched_torch_path():
    triplets = [make_triplet(seed) for seed in range(3)]
    for protocol in M.SSIM_PROTOCOLS:
        batched = M.batched_metrics(*(as_batch(list(x)) for x in zip(*triplets)), ssim_protocol=protocol)
        assert set(batched) == set(M.METRIC_NAMES)
        for name, column in batched.items():
            assert column.shape == (3,) and column.dtype == torch.float64
            extra = {"protocol": protocol} if name == "SSIM" else {}
            singles = [score(name, *t, **extra) for t in triplets]
            np.testing.assert_allclose(column.numpy(), singles, rtol=1e-12, err_msg=name)


def test_functional_accepts_tensors_and_a_channel_dim():
    f, a, b = make_triplet(1)
    t = [torch.from_numpy(x)[None] for x in (f, a, b)]  # (1, H, W) tensors
    assert M.qabf(*t) == pytest.approx(M.qabf(f, a, b), rel=1e-12)
    assert isinstance(M.en(t[0]), float)
    with pytest.raises(ValueError, match="fused"):
        M.en(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="shape"):
        M.mi(f, a, b[:-1])


def test_metric_names_and_sources_are_checked():
    f, a, b = (as_batch([x]) for x in make_triplet(2))
    assert list(M.batched_metrics(f, a, b, names=["qabf", "en"])) == ["Qabf", "EN"]
    assert set(M.batched_metrics(f, names=["EN", "SD", "SF", "AG"])) == {"EN", "SD", "SF", "AG"}
    with pytest.raises(ValueError):
        M.batched_metrics(f, a, b, names=["NOPE"])
    with pytest.raises(ValueError, match="need both source"):
        M.batched_metrics(f, names=["MI"])
    with pytest.raises(ValueError):
        M.batched_metrics(f, a, b, ssim_protocol="skimage")
    with pytest.raises(ValueError, match="at least 41x41"):
        M.vif(*(np.zeros((40, 40)),) * 3)


@pytest.fixture(scope="module")
def reference_cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    cases = [make_triplet(seed, size=96) for seed in range(2)]
    if AANLIB.is_dir():  # the central 128x128 of a real MRI-PET pair when the shared data set is present
        folders = AANLIB / "mri_pet" / "MRI", AANLIB / "mri_pet" / "PET"
        name = M.image_names(*folders)[40]
        a, b = (M.load_grey(folder / f"{name}.png")[64:192, 64:192].astype(np.float64) for folder in folders)
        cases.append((M.stretch_to_uint8_range(np.maximum(a, b)), a, b))
    return cases


def test_agreement_with_numpy_reference(reference_cases):
    for f, a, b in reference_cases:
        batch = [as_batch([x]) for x in (f, a, b)]
        expected = reference_metrics(f, a, b)
        expected["SSIM correct"] = reference_metrics(f, a, b, ["SSIM"], ssim_protocol="correct")["SSIM"]
        got = {name: float(v[0]) for name, v in M.batched_metrics(*batch).items()}
        got["SSIM correct"] = float(M.batched_metrics(*batch, names=["SSIM"], ssim_protocol="correct")["SSIM"][0])
        for name in ("VIF", "Qabf"):  # the definitions with the most room for a slip
            assert got[name] == pytest.approx(expected[name], rel=0.01), name
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-9), name


def test_published_protocol_matches_a_restatement_of_cddfuse_s_evaluator(reference_cases):
    pytest.importorskip("sklearn")  # the evaluator's MI is scikit-learn's mutual_info_score
    f0, a0, b0 = reference_cases[0]
    # a flat second source (VIF undefined: the evaluator counts 1) and a copy (every edge strength a tie)
    flat = (f0, a0, np.full_like(b0, 80.0))
    for f, a, b in [*reference_cases, flat, (a0.copy(), a0, b0)]:
        batch = [as_batch([x]) for x in (f, a, b)]
        got = {name: float(v[0]) for name, v in M.batched_metrics(*batch, protocol="published").items()}
        project = {name: float(v[0]) for name, v in M.batched_metrics(*batch).items()}
        for name, value in published_reference_metrics(f, a, b).items():
            assert got[name] == pytest.approx(value, rel=1e-9), name
        assert got["MI"] == pytest.approx(project["MI"] * math.log(2), rel=1e-12)  # nats, not bits
        for name in ("EN", "SD", "SF", "AG", "SCD", "SSIM", "CC"):  # the rest is computed alike
            assert got[name] == project[name] or math.isnan(got[name]) and math.isnan(project[name]), name
        if b is flat[2]:
            assert math.isnan(project["VIF"]) and not math.isnan(got["VIF"])
    with pytest.raises(ValueError, match="literature protocol"):
        M.batched_metrics(*batch, protocol="published", ssim_protocol="correct")
    with pytest.raises(ValueError, match="Unsupported option 'cddfuse'"):
        M.batched_metrics(*batch, protocol="cddfuse")


def test_the_published_protocol_scores_fused_images_as_written(tmp_path):
    dirs = write_dataset(tmp_path)
    scored = {
        protocol: M.evaluate_folders(
            {"avg": dirs["avg"]}, dirs["a"], dirs["b"], device="cpu", progress=False, protocol=protocol
        )["avg"]
        for protocol in ("project", "published")
    }
    f = M.load_grey(dirs["avg"] / "2.png")
    assert scored["published"]["SD"][1] == pytest.approx(M.sd(f), rel=1e-12)  # no min-max stretch
    assert scored["project"]["SD"][1] == pytest.approx(M.sd(M.stretch_to_uint8_range(f)), rel=1e-12)
    results = {"avg": scored["published"]}
    assert "published protocol" in M.markdown_table(results, "literature", protocol="published")


@pytest.mark.parametrize("protocol, data_range", [("literature", 2), ("correct", 255)])
def test_ssim_matches_scikit_image(reference_cases, protocol, data_range):
    for f, a, _ in reference_cases:
        expected = structural_similarity(f, a, data_range=data_range)
        assert M.ssim(f, a, a, protocol=protocol) / 2 == pytest.approx(expected, abs=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    batch = [as_batch(list(x)) for x in zip(*(make_triplet(seed) for seed in range(2)))]
    cpu = M.batched_metrics(*batch)
    gpu = M.batched_metrics(*(x.cuda() for x in batch))
    for name in cpu:
        assert gpu[name].is_cuda
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], rtol=1e-9, atol=1e-9)


# ----- the protocol -----


def test_to_uint8_grey_takes_luma_of_colour_images():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3)).astype(np.uint8)
    expected = np.round(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    np.testing.assert_array_equal(M.to_uint8_grey(rgb), expected)
    channel_first = M.to_uint8_grey(torch.from_numpy(rgb).permute(2, 0, 1))
    assert channel_first.dtype == torch.uint8
    np.testing.assert_array_equal(channel_first.numpy(), expected)
    np.testing.assert_array_equal(M.to_uint8_grey(expected[None].astype(float)), expected)  # grey (1, H, W)
    with pytest.raises(ValueError, match="RGB"):
        M.to_uint8_grey(np.zeros((4, 5, 6)))


def test_stretch_to_uint8_range_per_image():
    batch = torch.stack([torch.linspace(3, 10, 16).view(1, 4, 4), torch.full((1, 4, 4), 9.0)])
    out = M.stretch_to_uint8_range(batch)
    assert out.shape == batch.shape
    assert out[0].min() == 0 and out[0].max() == 255
    assert torch.equal(out, out.round())
    assert torch.equal(out[1], torch.zeros(1, 4, 4, dtype=torch.float64))  # nothing to stretch
    assert isinstance(M.stretch_to_uint8_range(np.array([[1.0, 2.0]])), np.ndarray)


# ----- MONAI / Ignite integration -----


def fusion_batches(n_batches: int = 2, size: int = 48) -> list[dict[str, torch.Tensor]]:
    """Batches of 2 in [0, 1]: "pred" fused (N, 1, H, W), "label" sources (N, 2, H, W)."""
    batches = []
    for i in range(n_batches):
        triplets = [make_triplet(10 * i + j, size=size) for j in range(2)]
        fused, a, b = (as_batch(list(x)).float() / 255 for x in zip(*triplets))
        batches.append({"pred": fused, "label": torch.cat([a, b], dim=1)})
    return batches


def expected_means(batches: list[dict[str, torch.Tensor]], names: tuple[str, ...]) -> dict[str, float]:
    fused = torch.cat([M.stretch_to_uint8_range(b["pred"]) for b in batches])
    sources = torch.cat([(b["label"].double() * 255).round() for b in batches])
    values = M.batched_metrics(fused, sources[:, :1], sources[:, 1:], names=names)
    return {name: float(v.mean()) for name, v in values.items()}


def test_fusion_metric_accumulates_and_aggregates_means():
    batches = fusion_batches()
    metric = M.FusionMetric(names=("EN", "MI", "Qabf", "SSIM"))
    for batch in batches:
        per_image = metric(y_pred=MetaTensor(batch["pred"]), y=batch["label"])  # as a MONAI evaluator gives it
        assert per_image.shape == (2, 4)
    aggregate = metric.aggregate()
    assert list(aggregate) == ["EN", "MI", "Qabf", "SSIM"]
    for name, value in expected_means(batches, tuple(aggregate)).items():
        assert aggregate[name] == pytest.approx(value, rel=1e-12)
    metric.reset()
    with pytest.raises(ValueError, match="no fusion results"):
        metric.aggregate()
    with pytest.raises(ValueError, match="two sources"):
        metric(y_pred=batches[0]["pred"], y=batches[0]["label"][:, :1])


def test_ignite_metric_handler_on_an_engine():
    batches = fusion_batches()
    names = ("EN", "MI", "VIF", "Qabf")
    engine = Engine(lambda engine, batch: batch)
    handler = IgniteMetricHandler(
        metric_fn=M.FusionMetric(names=names), output_transform=lambda out: (out["pred"], out["label"])
    )
    handler.attach(engine, "fusion")
    engine.run(batches, max_epochs=1)
    expected = expected_means(batches, names)
    for name in names:  # Ignite spreads the dict into engine.state.metrics
        assert engine.state.metrics[name] == pytest.approx(expected[name], rel=1e-12)
    assert set(engine.state.metrics["fusion"]) == set(names)
    assert engine.state.metric_details["fusion"].shape == (4, len(names))


class MeanFusion(torch.nn.Module):
    """Stand-in fusion network: the mean of the two source channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


def test_key_metric_of_a_supervised_evaluator():
    batches = [{"image": b["label"], "label": b["label"]} for b in fusion_batches()]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=batches,
        network=MeanFusion(),
        key_val_metric={
            "val_qabf": IgniteMetricHandler(
                metric_fn=M.FusionKeyMetric("qabf"), output_transform=from_engine(["pred", "label"])
            )
        },
        additional_metrics={
            "val_fusion": IgniteMetricHandler(
                metric_fn=M.FusionMetric(names=("EN", "SD")), output_transform=from_engine(["pred", "label"])
            )
        },
    )
    evaluator.run()
    fused = [{"pred": b["image"].mean(dim=1, keepdim=True), "label": b["label"]} for b in batches]
    expected = expected_means(fused, ("Qabf", "EN", "SD"))
    assert evaluator.state.best_metric == pytest.approx(expected["Qabf"], rel=1e-6)
    assert evaluator.state.metrics["SD"] == pytest.approx(expected["SD"], rel=1e-6)


# ----- folders, tables, plots -----


def write_dataset(root: Path, n: int = 3, size: int = 48) -> dict[str, Path]:
    """Sources a (grey) and b (colour), and two methods' fused images, as 8-bit PNGs."""
    dirs = {k: root / k for k in ("a", "b", "avg", "max")}
    for d in dirs.values():
        d.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):
        a, b = random_image(rng, size), random_image(rng, size)
        colour = np.stack([b, b * 0.5, b * 0.2], axis=-1).astype(np.uint8)  # pseudo-colour functional image
        b_grey = M.to_uint8_grey(colour).astype(np.float64)
        Image.fromarray(a.astype(np.uint8)).save(dirs["a"] / f"{i + 1}.png")
        Image.fromarray(colour).save(dirs["b"] / f"{i + 1}.png")
        Image.fromarray(np.round((a + b_grey) / 2).astype(np.uint8)).save(dirs["avg"] / f"{i + 1}.png")
        Image.fromarray(np.maximum(a, b_grey).astype(np.uint8)).save(dirs["max"] / f"{i + 1}.png")
    return dirs


def test_evaluate_folders_and_writers(tmp_path):
    dirs = write_dataset(tmp_path)
    results = M.evaluate_folders(
        {"avg": dirs["avg"], "max": dirs["max"]}, dirs["a"], dirs["b"], batch_size=2, device="cpu", progress=False
    )
    names = M.image_names(dirs["a"], dirs["b"])
    assert names == ["1", "2", "3"]
    assert set(results) == {"avg", "max"} and all(len(v) == 3 for v in results["avg"].values())
    # the second image, recomputed through the protocol by hand
    a = M.load_grey(dirs["a"] / "2.png")
    b = M.load_grey(dirs["b"] / "2.png")
    f = M.stretch_to_uint8_range(M.load_grey(dirs["max"] / "2.png"))
    assert results["max"]["Qabf"][1] == pytest.approx(M.qabf(f, a, b), rel=1e-12)
    assert results["max"]["SSIM"][1] == pytest.approx(M.ssim(f, a, b), rel=1e-12)

    summary = M.summarise(results)
    assert summary["avg"]["EN"] == pytest.approx((np.mean(results["avg"]["EN"]), np.std(results["avg"]["EN"])))
    # an exact copy's PSNR is infinite: so is the mean, and the spread is undefined (NaN), without numpy's inf - inf
    # warning (any warning fails here)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, spread = M.summarise({"copy": {"PSNR": [math.inf, 30.0, math.nan]}})["copy"]["PSNR"]
        M.plot_results({"copy": {"PSNR": [math.inf]}, "other": {"PSNR": [30.0]}}, tmp_path / "inf.png")  # marked
    assert mean == math.inf and math.isnan(spread) and (tmp_path / "inf.png").stat().st_size > 0

    M.write_csv(results, tmp_path / "r.csv", names=names)
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert len(rows) == 6 and rows[0]["method"] == "avg" and rows[0]["image"] == "1"
    assert float(rows[4]["MI"]) == pytest.approx(results["max"]["MI"][1])

    text = M.markdown_table(results, ssim_protocol="literature")
    assert "data_range = 2" in text and "| method | EN | SD |" in text
    best_qabf = max(("avg", "max"), key=lambda m: summary[m]["Qabf"][0])
    row = next(line for line in text.splitlines() if line.startswith(f"| {best_qabf} |"))
    qabf_cell = row.split("|")[2 + M.METRIC_NAMES.index("Qabf")]
    assert qabf_cell.strip().startswith("**")

    M.plot_results(results, tmp_path / "r.png")
    with Image.open(tmp_path / "r.png") as img:
        assert img.format == "PNG" and img.width > 200

    table, written = M.write_evaluation(results, tmp_path / "report", dirs["a"], dirs["b"])
    assert table == text and [p.name for p in written] == ["metrics.csv", "metrics.md", "metrics.png"]
    assert (tmp_path / "report" / "metrics.csv").read_text() == (tmp_path / "r.csv").read_text()
    with pytest.raises(FileExistsError, match="metrics.csv"):
        M.write_evaluation(results, tmp_path / "report", dirs["a"], dirs["b"])
    M.write_evaluation(results, tmp_path / "report", dirs["a"], dirs["b"], overwrite=True)
    # with a reference method, the paired differences from it are written and returned too
    table, written = M.write_evaluation(results, tmp_path / "paired", dirs["a"], dirs["b"], reference="avg")
    assert written[-1].name == "paired.md" and "| max − avg |" in written[-1].read_text()
    assert table.endswith(written[-1].read_text())
    with pytest.raises(ValueError, match="reference 'mean'"):
        M.write_evaluation(results, tmp_path / "other", dirs["a"], dirs["b"], reference="mean")
    assert not (tmp_path / "other").exists()


def test_evaluate_folders_errors(tmp_path):
    dirs = write_dataset(tmp_path, n=2)
    kwargs = {"device": "cpu", "progress": False}
    with pytest.raises(FileNotFoundError, match="missing"):
        M.evaluate_folders({"x": tmp_path / "missing"}, dirs["a"], dirs["b"], **kwargs)
    (dirs["max"] / "2.png").rename(dirs["max"] / "7.png")
    with pytest.raises(ValueError, match="max"):
        M.evaluate_folders({"max": dirs["max"]}, dirs["a"], dirs["b"], **kwargs)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(dirs["avg"] / "2.png")
    with pytest.raises(ValueError, match="2.png"):
        M.evaluate_folders({"avg": dirs["avg"]}, dirs["a"], dirs["b"], **kwargs)


def test_paired_difference_finds_a_consistent_gain_and_none_in_noise():
    rng = np.random.default_rng(1)
    reference = rng.uniform(0.4, 0.8, 60)
    # the same images scored 0.02 higher, with image-to-image noise of 0.01
    better = reference + 0.02 + rng.normal(0, 0.01, 60)
    d = M.paired_difference(better, reference)
    assert d.images == 60 and d.mean == pytest.approx(np.mean(better - reference))
    assert 0 < d.low < d.mean < d.high and d.excludes_zero and d.p_value < 1e-6
    # for a large sample the percentile bootstrap agrees with the normal interval mean ± 1.96 s / sqrt(n)
    half_width = 1.96 * np.std(better - reference) / np.sqrt(60)
    assert (d.high - d.low) / 2 == pytest.approx(half_width, rel=0.15)
    # the between-image spread (0.4 to 0.8) does not hide the paired gain, but it would an unpaired one
    assert 0.02 < np.std(reference)
    # pure noise around the reference: the interval straddles zero and the test does not reject
    noisy = reference + rng.normal(0, 0.01, 60)
    n = M.paired_difference(noisy, reference)
    assert n.low < 0 < n.high and not n.excludes_zero and n.p_value > 0.05
    # identical scores: no difference at all
    same = M.paired_difference(reference, reference)
    assert (same.mean, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    # the same seed gives the same interval; the order of the images does not change the mean
    assert M.paired_difference(better, reference) == d
    assert M.paired_difference(better[::-1], reference[::-1]).mean == pytest.approx(d.mean)


def test_paired_difference_drops_undefined_values_and_checks_its_input():
    d = M.paired_difference([0.5, math.nan, 0.7, 0.9], [0.4, 0.5, math.nan, 0.6])
    assert d.images == 2 and d.mean == pytest.approx(0.2)
    assert math.isnan(M.paired_difference([math.nan], [0.5]).mean)
    with pytest.raises(ValueError, match="equally long"):
        M.paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="confidence"):
        M.paired_difference([0.1], [0.2], confidence=95)


def test_one_image_gives_a_difference_without_interval_or_p_value():
    """One image has no spread to resample or rank: the table said "[+0.5400, +0.5400] p=1", an interval and a
    p-value computed from nothing; it now gives the difference and says the rest is not computable."""
    d = M.paired_difference([0.9], [0.36])
    assert d.images == 1 and d.mean == pytest.approx(0.54)
    assert math.isnan(d.low) and math.isnan(d.high) and math.isnan(d.p_value) and not d.significant
    row = M.paired_comparison_table({("net", "rule"): {"VIF": d}}).splitlines()[-1]
    assert row == "| net − rule | +0.5400 (interval and p not computable from 1 image) |"


def test_paired_comparison_table_marks_differences_whose_interval_excludes_zero():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.9, 40)
    results = {
        "rule": {"VIF": list(base), "Qabf": list(base)},
        "net": {"VIF": list(base + 0.05 + rng.normal(0, 0.01, 40)), "Qabf": list(base + rng.normal(0, 0.01, 40))},
    }
    comparison = M.paired_comparison(results, [("net", "rule")], metrics=["VIF", "Qabf", "SSIM"])
    assert list(comparison[("net", "rule")]) == ["VIF", "Qabf"]  # SSIM was not scored; usual metric order kept
    table = M.paired_comparison_table(comparison)
    row = next(line for line in table.splitlines() if line.startswith("| net − rule |"))
    vif_cell, qabf_cell = [c.strip() for c in row.split("|")[2:4]]
    assert vif_cell.startswith("**+0.05") and not qabf_cell.startswith("**")
    assert "over 40 images" in table and "95% percentile-bootstrap" in table
    with pytest.raises(ValueError, match="no results for \\['max'\\]"):
        M.paired_comparison(results, [("net", "max")])


def test_a_difference_is_bold_only_when_interval_and_test_agree():
    # six images, five gains and one loss: the bootstrap interval clears zero, the exact signed-rank test does not
    reference = [0.5] * 6
    few = M.paired_difference([0.51, 0.52, 0.53, 0.54, 0.55, 0.485], reference)
    assert few.excludes_zero and few.p_value > 0.05 and not few.significant
    table = M.paired_comparison_table({("net", "rule"): {"VIF": few}})
    assert "**" not in table.split("\n", 2)[2] and "p < 0.05" in table
    many = M.paired_difference([0.5 + 0.01 * (i % 5 + 1) for i in range(30)], [0.5] * 30)
    assert many.significant and "**+0.03" in M.paired_comparison_table({("net", "rule"): {"VIF": many}})
