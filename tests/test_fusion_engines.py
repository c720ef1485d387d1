"""What runs MMIF-Net (mmif_monai.fusion.engines): ``auto``, the export cache, and ``--engine`` in mmif fuse (2D
and 3D) and the Deploy app. That the runtimes compute what torch computes: tests/test_export.py."""

import copy
import importlib.util
import logging
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from PIL import Image

from cli_runs import fuse_pair
from mmif_monai.fusion import engines
from mmif_monai.fusion.engines import (
    CACHE_ENV,
    CPU_ENGINE,
    RUNTIME_ENGINES,
    cache_dir,
    exported_model,
    model_key,
    resolve_engine,
)
from mmif_monai.fusion.methods import load_fusion_method
from mmif_monai.io.paths import REPO_ROOT, SAMPLES_DIR
from mmif_monai.io.preflight import ENGINE_NAMES
from mmif_monai.networks import MMIFNet

PET = SAMPLES_DIR / "mri_pet"
NO_OPENVINO = importlib.util.find_spec("openvino") is None


def test_auto_is_the_faster_cpu_runtime_on_the_cpu_and_torch_elsewhere():
    assert resolve_engine("auto", "cpu") == CPU_ENGINE and CPU_ENGINE in RUNTIME_ENGINES
    assert resolve_engine("auto", torch.device("cuda:0")) == "torch"  # naming a device needs no GPU
    assert resolve_engine("openvino", "cpu") == "openvino" and resolve_engine("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_engine("onnxruntime", "cuda")
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        resolve_engine("tensorrt", "cpu")
    assert set(ENGINE_NAMES) == {"auto", "torch", *RUNTIME_ENGINES}


def test_the_default_engine_is_a_core_dependency_and_the_other_runtime_an_extra():
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(line).name for line in project["dependencies"]}
    other = next(name for name in RUNTIME_ENGINES if name != CPU_ENGINE)
    assert CPU_ENGINE in core and "onnx" in core and "onnxscript" in core  # the exporter's packages too
    extra = [Requirement(line).name for line in project["optional-dependencies"][other]]
    assert other not in core and extra == [other]


@pytest.fixture
def small_network():
    return MMIFNet(msl=False, sa=False, decompose=False, stem_features=4, features=(8, 8, 8, 8, 8)).eval()


@pytest.fixture
def exports(monkeypatch, tmp_path):
    """The exporter replaced by one that writes a stand-in file and records each call; the cache in tmp_path."""
    calls: list[Path] = []

    def export(network, path):
        calls.append(Path(path))
        Path(path).write_bytes(b"an ONNX model")
        return Path(path)

    monkeypatch.setattr(engines, "export_onnx", export)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return calls


def test_a_network_is_exported_once_into_the_cache_and_read_from_there_after(exports, small_network, tmp_path):
    reports: list[str] = []
    with exported_model(small_network, report=reports.append) as first:
        assert first.read_bytes() == b"an ONNX model"
    with exported_model(copy.deepcopy(small_network), report=reports.append) as second:
        pass
    assert first == second and first.parent == tmp_path / "cache" and len(exports) == 1
    assert list(first.parent.iterdir()) == [first]  # exported beside it under a temporary name, then renamed
    assert reports == [f"exporting the network to ONNX once for these weights: {first}"]


def test_the_cache_key_follows_the_weights_and_the_configuration(small_network):
    key = model_key(small_network)
    same = MMIFNet(msl=False, sa=False, decompose=False, stem_features=4, features=(8, 8, 8, 8, 8)).eval()
    same.load_state_dict(small_network.state_dict())
    assert model_key(same) == key
    other_weights = copy.deepcopy(small_network)
    with torch.no_grad():
        next(other_weights.parameters()).add_(1e-3)
    # decompose has no parameters of its own: the same state dict, another network
    other_switch = MMIFNet(msl=False, sa=False, decompose=True, stem_features=4, features=(8, 8, 8, 8, 8)).eval()
    other_switch.load_state_dict(small_network.state_dict())
    assert len({key, model_key(other_weights), model_key(other_switch)}) == 3


def test_a_failed_export_leaves_nothing_in_the_cache(monkeypatch, tmp_path, small_network):
    def half_written(network, path):
        Path(path).write_bytes(b"half a model")
        raise RuntimeError("the exporter failed")

    monkeypatch.setattr(engines, "export_onnx", half_written)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="the exporter failed"), exported_model(small_network):
        pass
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_untrained_network_is_exported_for_the_run_only(exports, small_network, tmp_path):
    with exported_model(small_network, cacheable=False) as path:
        assert path.is_file() and path.parent != tmp_path / "cache"
    assert not path.exists() and not (tmp_path / "cache").exists()


def test_a_cache_that_cannot_be_written_is_passed_over_with_a_warning(exports, small_network, tmp_path, caplog):
    (tmp_path / "a file").write_text("not a folder")
    engines_cache = tmp_path / "a file" / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(engines_cache))
        with caplog.at_level(logging.WARNING), exported_model(small_network) as path:
            assert path.is_file() and engines_cache not in path.parents
    assert not path.exists() and "not writable" in caplog.text


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "mmif-monai"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "mmif-monai"


def test_an_onnx_engine_is_refused_for_a_classical_method():
    fuse, _ = load_fusion_method("average", engine="auto")  # auto: nothing to choose for a classical rule
    assert callable(fuse)
    with pytest.raises(ValueError, match="applies to mmif-net only"):
        load_fusion_method("average", engine="onnxruntime")


def _fused(tmp_path: Path, capsys, *options: str) -> tuple[np.ndarray, str]:
    out = tmp_path / f"fused{'-'.join(options)}.png"
    assert fuse_pair(PET / "MRI/30061.png", PET / "PET/30061.png", out, *options) == 0
    return np.asarray(Image.open(out), dtype=int), capsys.readouterr().out


def test_mmif_fuse_runs_the_cpu_engine_by_default_and_says_which_engine_ran(tmp_path, capsys):
    default, said = _fused(tmp_path, capsys)
    threads = torch.get_num_threads()
    assert f"engine: {CPU_ENGINE} " in said and f"(CPU, {threads} thread" in said, said
    in_torch, said = _fused(tmp_path, capsys, "--engine", "torch")
    assert f"engine: torch {torch.__version__} (CPU, {threads} thread" in said, said
    # the same fusion to rounding (tests/test_export.py): in 8 bits at most one grey level on 0.1 % of the values
    differ = np.abs(default - in_torch)
    assert differ.max() <= 13 and (differ > 1).mean() <= 1e-3  # 13 levels: 0.05, a moved unpooling value


@pytest.mark.skipif(NO_OPENVINO, reason="needs openvino (the dev extra)")
def test_mmif_fuse_runs_openvino_when_asked(tmp_path, capsys):
    _, said = _fused(tmp_path, capsys, "--engine", "openvino")
    assert "engine: openvino " in said and "(CPU, " in said, said


def test_mmif_fuse_refuses_an_onnx_engine_for_a_classical_method(tmp_path, capsys):
    status = fuse_pair(PET / "MRI/30061.png", PET / "PET/30061.png", tmp_path / "f.png", "--method", "max",
                       "--engine", "onnxruntime")  # fmt: skip
    assert status == 1 and "applies to mmif-net only" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


def test_the_volume_job_runs_the_cpu_engine_by_default_and_says_so(tmp_path):
    from mmif_monai.jobs.volumes import fuse_volume_files
    from mmif_monai.phantoms import write_phantom_nifti

    phantom = write_phantom_nifti(tmp_path / "phantom", shape=(64, 64, 6))
    volumes, notes = {}, {}
    for engine in ("auto", "torch"):
        output = tmp_path / f"{engine}.nii.gz"
        result = fuse_volume_files(phantom.anatomical, phantom.functional, output, engine=engine)
        notes[engine] = [line for line in result.notes if line.startswith("engine: ")]
        volumes[engine] = np.asarray(nibabel.load(output).dataobj, dtype=int)
    threads = torch.get_num_threads()
    assert len(notes["auto"]) == 1 and notes["auto"][0].startswith(f"engine: {CPU_ENGINE} "), notes
    assert notes["torch"] == [f"engine: torch {torch.__version__} (CPU, {threads} thread{'s' * (threads != 1)})"]
    differ = np.abs(volumes["auto"] - volumes["torch"])
    assert differ.max() <= 13 and (differ > 1).mean() <= 1e-3  # as for mmif fuse above


def test_the_deploy_app_takes_the_engine_from_its_option_or_the_environment(monkeypatch):
    pytest.importorskip("monai.deploy.core", reason="needs the [deploy] extra", exc_type=ModuleNotFoundError)
    from mmif_monai.deploy.app import ENGINE_ENV, build_parser

    monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert build_parser().parse_args([]).engine == "auto"
    monkeypatch.setenv(ENGINE_ENV, "torch")
    assert build_parser().parse_args([]).engine == "torch"
    assert build_parser().parse_args(["--engine", "openvino"]).engine == "openvino"
