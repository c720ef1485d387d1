"""What runs a fusion network: torch, or its ONNX export in ONNX Runtime or OpenVINO on the CPU.

``auto`` is the faster CPU runtime (:data:`CPU_ENGINE`, chosen from the engine table of docs/benchmarks.md, which
``scripts/benchmark.py --sections engines`` prints) when the device is the CPU, and torch on a GPU. Training and
the studies run torch. The ONNX model is exported once per network (weights, configuration) and cached on disk
(:func:`cache_dir`); a later run loads it in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmif_monai.errors import MMIFError
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.io.preflight import ENGINE_NAMES
from mmif_monai.networks.export import INPUT_NAMES, OPSET, export_onnx
from mmif_monai.networks.inference import prepare_for_inference

__all__ = [
    "ENGINE_NAMES",
    "CPU_ENGINE",
    "RUNTIME_ENGINES",
    "CACHE_ENV",
    "resolve_engine",
    "cache_dir",
    "model_key",
    "exported_model",
    "RuntimeFusion",
    "load_engine",
    "engine_line",
]

logger = logging.getLogger(__name__)

#: the runtimes that run the ONNX export, on the CPU
RUNTIME_ENGINES = ("onnxruntime", "openvino")
#: what ``auto`` runs on the CPU: the faster runtime of docs/benchmarks.md's engine table. Its package is a core
#: dependency (pyproject.toml); the other runtime is the ``openvino`` extra.
CPU_ENGINE = "onnxruntime"
#: the environment variable that moves the export cache
CACHE_ENV = "MMIF_CACHE_DIR"
_INSTALL = {"onnxruntime": "onnxruntime", "openvino": "'mmif-monai[openvino]'"}


def resolve_engine(engine: str, device: str | torch.device = "cpu") -> str:
    """The engine that runs on ``device``: ``auto`` becomes :data:`CPU_ENGINE` on the CPU and ``torch`` elsewhere.

    Raises:
        ValueError: an unknown engine, or an ONNX runtime asked for on a device other than the CPU.
    """
    if engine not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINE_NAMES)}")
    on_cpu = torch.device(device).type == "cpu"
    if engine == "auto":
        return CPU_ENGINE if on_cpu else "torch"
    if engine in RUNTIME_ENGINES and not on_cpu:
        raise ValueError(f"engine {engine!r} runs on the CPU, not on {device}: use --device cpu, or --engine torch")
    return engine


def cache_dir() -> Path:
    """Where exported models are kept: ``$MMIF_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmif-monai``, else
    ``~/.cache/mmif-monai``; never inside the package."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmif-monai"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def model_key(network: nn.Module) -> str:
    """A digest of everything the exported model depends on: the network's parameters and buffers (the weights),
    its configuration (every module's type and plain attributes: switches, widths, kernel sizes), the source of the
    modules that define its computation, and the exporter's versions (torch, onnx, onnxscript, the opset)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name} {data.dtype} {tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    sources = {export_onnx.__module__}
    for name, module in network.named_modules():
        settings = {k: v for k, v in sorted(vars(module).items()) if isinstance(v, (bool, int, float, str, tuple))}
        digest.update(f"{name} {type(module).__qualname__} {settings}".encode())
        sources.add(type(module).__module__)
    for source in sorted(sources):
        file = getattr(sys.modules.get(source), "__file__", None)
        digest.update(Path(file).read_bytes() if file else source.encode())
    versions = [_version(name) for name in ("torch", "onnx", "onnxscript")]
    digest.update(f"opset {OPSET} {versions}".encode())
    return digest.hexdigest()[:24]


def _export_atomically(network: nn.Module, path: Path) -> None:
    """Export to a temporary file beside ``path``, then rename it into place: never a partial model at ``path``."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        export_onnx(network, partial)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)


@contextlib.contextmanager
def exported_model(
    network: nn.Module, cacheable: bool = True, report: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """The ONNX export of ``network``: from the cache (exported into it on first use) when ``cacheable``, else a
    temporary file removed on exit (an untrained network, whose random weights no later run will have again).

    A cache that cannot be written (a read-only home folder) is passed over with a warning: the model is exported
    to a temporary file instead.
    """
    cached = None
    if cacheable:
        cached = cache_dir() / f"mmif-net-{model_key(network)}.onnx"
        if not cached.is_file():
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                if report is not None:
                    report(f"exporting the network to ONNX once for these weights: {cached}")
                _export_atomically(network, cached)
            except OSError as error:
                logger.warning("export cache %s not writable (%s); exporting for this run only", cached.parent, error)
                cached = None
    if cached is not None:
        yield cached
        return
    with tempfile.TemporaryDirectory(prefix="mmif-onnx-") as folder:
        yield export_onnx(network, Path(folder) / "mmif-net.onnx")


class RuntimeFusion:
    """A :data:`~mmif_monai.fusion.pipeline.FuseFn` that runs an exported fusion network (:func:`export_onnx`'s
    inputs and output) in ONNX Runtime or OpenVINO on the CPU, with ``threads`` threads.

    ``description`` says which, e.g. ``onnxruntime 1.32.0 (CPU, 2 threads)``. OpenVINO runs in float32 (its CPU
    plugin would otherwise pick bfloat16 on processors that have it) and keeps its compiled model in
    ``compiled_cache`` when one is given.
    """

    def __init__(self, engine: str, model: str | Path, threads: int, compiled_cache: Path | None = None) -> None:
        if engine not in RUNTIME_ENGINES:
            raise ValueError(f"RuntimeFusion runs {' or '.join(RUNTIME_ENGINES)}, not {engine!r}")
        self.engine, self.threads = engine, threads
        plural = "s" if threads != 1 else ""
        self.description = f"{engine} {_version(engine)} (CPU, {threads} thread{plural})"
        try:
            if engine == "onnxruntime":
                import onnxruntime
            else:
                import openvino
        except ModuleNotFoundError as error:
            raise MMIFError(f"{error}: engine {engine!r} needs it: pip install {_INSTALL[engine]}") from error
        if engine == "onnxruntime":
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._run: Callable[[dict[str, np.ndarray]], np.ndarray] = lambda feeds: session.run(None, feeds)[0]
        else:
            core = openvino.Core()
            if compiled_cache is not None:
                core.set_property({"CACHE_DIR": str(compiled_cache)})
            settings = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
            compiled = core.compile_model(str(model), "CPU", settings)
            self._run = lambda feeds: compiled(feeds)[0]

    def __call__(self, anatomical: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        feeds = {
            name: np.ascontiguousarray(image.detach().to("cpu", torch.float32).numpy())
            for name, image in zip(INPUT_NAMES, (anatomical, functional))
        }
        return torch.from_numpy(np.array(self._run(feeds), dtype=np.float32))


def load_engine(
    network: nn.Module,
    engine: str = "auto",
    device: str | torch.device = "cpu",
    cacheable: bool = True,
    report: Callable[[str], None] | None = None,
) -> FuseFn:
    """``network`` (taking ``(anatomical, functional)`` batches) as a fusion callable on ``engine``
    (:func:`resolve_engine`): its inference form for ``torch``, else a :class:`RuntimeFusion` of its ONNX export
    (:func:`exported_model`; ``cacheable`` and ``report`` go there) with torch's CPU thread count."""
    engine = resolve_engine(engine, device)
    if engine == "torch":
        return prepare_for_inference(network)
    with exported_model(network, cacheable, report) as model:
        cached = model.parent == cache_dir()  # not a temporary export: OpenVINO may keep its compiled form beside it
        return RuntimeFusion(engine, model, torch.get_num_threads(), cache_dir() / "openvino" if cached else None)


def engine_line(fuse: FuseFn, device: str | torch.device = "cpu") -> str | None:
    """What runs ``fuse``, for a job's notes (``engine: ...``): a runtime's description, or torch with its device
    and CPU threads; None for a function (a classical rule)."""
    if isinstance(fuse, RuntimeFusion):
        return fuse.description
    if not isinstance(fuse, nn.Module):
        return None
    device = torch.device(device)
    if device.type != "cpu":
        return f"torch {torch.__version__} ({device})"
    threads = torch.get_num_threads()
    return f"torch {torch.__version__} (CPU, {threads} thread{'s' if threads != 1 else ''})"
