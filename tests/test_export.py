"""MMIF-Net's ONNX export (mmif_monai.networks.export) run by ONNX Runtime and OpenVINO, against torch.

The reference is the network's inference form in torch (``prepare_for_inference``), the torch engine. The bounds,
and why:

- float32 rounding: the runtimes order sums differently (other convolution kernels, fused ops), which moves an
  output by about 1e-6 after MMIF-Net's ~60 layers (measured: at most 4e-6 on random inputs, at most 3e-4 on the
  sample pairs, where the attention and the learned fusion weights sharpen differences). All but 0.1 % of the
  pixels are asserted within 1e-4.
- UnPooling: a 2x2 window whose gap to its peak lies at the tie tolerance within rounding may place its value one
  pixel over in one runtime and not in the other (docs/method.md, Decoder), moving that pixel by up to a few
  hundredths (0.02 on a sample pair between machines). So every pixel is asserted within 0.05, and at most 0.1 % of
  them more than one 8-bit grey level (1/255) apart. Measured on the six sample pairs: no pixel more than 1/255
  apart, and in 8 bits at most 3 of 196,608 values one level apart.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from mmif_monai.decomposition.projection import load_projection
from mmif_monai.fusion.engines import RuntimeFusion
from mmif_monai.fusion.pipeline import fuse_batch
from mmif_monai.io.images import read_slice
from mmif_monai.io.paths import BUNDLE_DIR, SAMPLES_DIR
from mmif_monai.networks import MMIFNet
from mmif_monai.networks.export import INPUT_NAMES, OUTPUT_NAME, export_onnx
from mmif_monai.networks.inference import prepare_for_inference
from mmif_monai.networks.pretrained import load_mmif_net

# exports MMIF-Net to ONNX six times (the shipped weights, four other configurations, MONAI's onnx_export in a
# subprocess; 25-70 s each on a 2-core CPU, about 5 min in all): left out of the quick run (pytest -m "not slow"),
# which still fuses through the default CPU engine (test_fusion_engines, test_cli)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ROUNDING, UNPOOL_MOVE, SHARE, SMALL_IMAGE_SHARE = 1e-4, 0.05, 1e-3, 1e-2
NO_OPENVINO = importlib.util.find_spec("openvino") is None
RUNTIMES = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(NO_OPENVINO, reason="the dev extra's"))]
SAMPLE_PAIRS = sorted(
    (anatomical, anatomical.parents[1] / modality / anatomical.name)
    for pair_type, modality in (("mri_ct", "CT"), ("mri_pet", "PET"), ("mri_spect", "SPECT"))
    for anatomical in (SAMPLES_DIR / pair_type / "MRI").glob("*.png")
)


def assert_within_tolerance(
    got: torch.Tensor, expected: torch.Tensor, what: str, share: float = SHARE, max_move: float | None = UNPOOL_MOVE
) -> None:
    """The bounds of the module docstring; ``share``: of the pixels, those allowed beyond rounding; ``max_move``:
    the bound on every pixel (None: none)."""
    assert got.shape == expected.shape, f"{what}: shape {tuple(got.shape)} != {tuple(expected.shape)}"
    diff = (got - expected).abs()
    stats = f"{what}: max {float(diff.max()):.2e}, share > 1e-4 {float((diff > ROUNDING).float().mean()):.2e}"
    assert float((diff > ROUNDING).float().mean()) <= share, stats
    assert float((diff > 1 / 255).float().mean()) <= share, stats
    assert max_move is None or float(diff.max()) <= max_move, stats


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory):
    network = load_mmif_net().network
    return network, export_onnx(network, tmp_path_factory.mktemp("shipped") / "mmif-net.onnx")


def test_the_export_takes_any_batch_and_slice_size_in_one_model(shipped_export):
    network, model = shipped_export
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(INPUT_NAMES)
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    assert all(isinstance(d, str) for i in session.get_inputs() for d in (i.shape[0], i.shape[2], i.shape[3]))
    torch_form = prepare_for_inference(network)
    generator = torch.Generator().manual_seed(0)
    # every size class the graph's shape arithmetic meets: multiples of 16 (no reflect padding) and not, above, at,
    # across and below the 64 px canvas, the 16 px minimum; batches of 1 to 3
    sizes = [(1, 96, 80), (2, 72, 88), (3, 70, 130), (1, 64, 64), (1, 63, 129), (1, 40, 50), (1, 16, 20), (1, 17, 64)]
    for batch, height, width in sizes:
        anatomical, functional = torch.rand(2, batch, 1, height, width, generator=generator)
        got = session.run(None, {"anatomical": anatomical.numpy(), "functional": functional.numpy()})[0]
        assert_within_tolerance(torch.from_numpy(got), torch_form(anatomical, functional), f"{batch}x{height}x{width}")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_both_runtimes_fuse_the_sample_pairs_as_torch_does(shipped_export, runtime):
    network, model = shipped_export
    torch_form, engine = prepare_for_inference(network), RuntimeFusion(runtime, model, threads=1)
    for anatomical_file, functional_file in SAMPLE_PAIRS:
        anatomical, functional = read_slice(anatomical_file)[None], read_slice(functional_file)[None]
        # what mmif fuse writes: the network's luminance, colour put back, background kept
        expected = fuse_batch(torch_form, anatomical, functional)
        assert_within_tolerance(fuse_batch(engine, anatomical, functional), expected, str(functional_file))


# each switch both ways, and widths other than the paper's: the fast configuration (MMIFNet(decompose=False,
# stem_features=8, features=(16, 16, 32, 32, 48))) and narrow ones. Each with the spread of its random weights
# (N(0, scale²)): far from the paper's tiny initialisation, so that every layer shapes the output, yet small enough
# that the output is not clamped to a constant (measured: at 0.3 the first and third saturate at 1 and 0)
CONFIGURATIONS = [
    ({"decompose": False, "stem_features": 8, "features": (16, 16, 32, 32, 48)}, 0.2),
    (
        {"msl": False, "sa": False, "fa": False, "decompose": False, "stem_features": 4, "features": (8, 8, 8, 8, 16)},
        0.3,
    ),
    (
        {"msl": False, "sa": True, "fa": False, "decompose": True, "stem_features": 8, "features": (8, 16, 16, 16, 16)},
        0.15,
    ),
    (
        {"msl": True, "sa": False, "fa": True, "decompose": True, "stem_features": 4, "features": (12, 8, 16, 8, 24)},
        0.3,
    ),
]


@pytest.mark.parametrize(
    ("config", "scale"),
    CONFIGURATIONS,
    ids=[",".join(f"{k}={v}" for k, v in config.items()) for config, _ in CONFIGURATIONS],
)
def test_every_configuration_exports_and_fuses_as_torch_does(tmp_path, config, scale):
    network = MMIFNet(projection=load_projection(), **config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    engine = RuntimeFusion("onnxruntime", export_onnx(network, tmp_path / "model.onnx"), threads=1)
    torch_form = prepare_for_inference(network)
    for batch, height, width in [(2, 72, 88), (1, 40, 50)]:
        anatomical, functional = torch.rand(2, batch, 1, height, width, generator=generator)
        expected = torch_form(anatomical, functional)
        assert float(expected.std()) > 0.01  # not a constant image: the comparison says something
        # one UnPooling window moved at the tie tolerance changes a compact blob of about 34 pixels of a 72 x 88 image
        # (0.5 %; measured: the fast configuration, everything else within 4e-7), hence 1 % here: two such windows.
        # With random weights that blob's change is bounded only by the output's range (measured up to 0.08), so
        # no bound per pixel here; trained weights keep it under UNPOOL_MOVE (the tests above)
        what = f"{config} {batch}x{height}x{width}"
        got = engine(anatomical, functional)
        assert_within_tolerance(got, expected, what, share=SMALL_IMAGE_SHARE, max_move=None)


@pytest.mark.slow  # MONAI's bundle command in a subprocess
def test_the_bundle_exports_through_monai_onnx_export_with_its_configs(tmp_path):
    configs, model = BUNDLE_DIR / "configs", tmp_path / "mmif_net.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "onnx_export", "--args_file", str(configs / "onnx_export.json"),
         "--config_file", str(configs / "inference.json"), "--meta_file", str(configs / "metadata.json"),
         "--ckpt_file", str(BUNDLE_DIR / "models/model.pt"), "--key_in_ckpt", "model", "--filepath", str(model)],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["pred"]
    torch_form = prepare_for_inference(load_mmif_net().network)
    # the bundle's input convention: (N, 2, H, W), anatomical and functional luminance; two pairs of another size
    # than the example's, in one batch
    pairs = [SAMPLE_PAIRS[0], SAMPLE_PAIRS[1]]
    image = torch.stack([torch.cat([read_slice(a), read_slice(b)]) for a, b in pairs])[..., :200, :232]
    got = torch.from_numpy(session.run(None, {"image": np.ascontiguousarray(image.numpy())})[0])
    assert_within_tolerance(got, torch_form(image), "bundle export")
