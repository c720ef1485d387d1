"""The MONAI Deploy application: a DICOM study folder in, the fused DICOM series out.

    python -m mmif_monai.deploy.app -i STUDY_DIR -o OUT_DIR [-m WEIGHTS] [--rules RULES.json] [--register rigid]
        [--engine auto|torch|onnxruntime|openvino]

The operators, in order: the SDK's ``DICOMDataLoaderOperator`` (every DICOM file under STUDY_DIR, grouped by
study and series) -> :class:`~mmif_monai.deploy.operators.FusionSeriesSelectorOperator` (one patient, one
study; the anatomical and the functional series by rules) -> ``AlignedVolumesOperator`` (load both, functional
onto the anatomical grid) -> ``FusionInferenceOperator`` (the bundle's network, slice by slice) ->
``FusedSeriesWriterOperator`` (``OUT_DIR/fused``: a new series of the same patient and study).

Paths follow the SDK: ``-i``/``-o``/``-m`` or, when absent, ``HOLOSCAN_INPUT_PATH`` / ``HOLOSCAN_OUTPUT_PATH`` /
``HOLOSCAN_MODEL_PATH`` (as set inside a MONAI Application Package); the model defaults to the bundle's
``models/model.pt``. ``--engine`` or, when absent, ``MMIF_ENGINE`` chooses what runs the network (default ``auto``:
the faster ONNX runtime on the CPU, torch on a GPU). Errors a user can cause print one line
``mmif-deploy: error: ...`` and exit 1; the SDK's and Holoscan's logs and the traceback appear with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

try:
    with warnings.catch_warnings():
        # Holoscan warns at import when the stack limit is under 32 MB; its logger repeats the warning when the
        # app starts (shown with --debug), so the import-time copy would only break the one-line error output
        warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)
        from holoscan.conditions import CountCondition
        from holoscan.logger import LogLevel, set_log_level
        from monai.deploy.core import Application, RuntimeEnv
        from monai.deploy.exceptions import MONAIAppSdkError
        from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        f"{error}: the deploy app needs the MONAI Deploy App SDK, the [deploy] extra: pip install -e '.[deploy]'",
        name=error.name,
    ) from error

from mmif_monai.decomposition.projection import default_projection_path
from mmif_monai.deploy.operators import (
    ALIGNED,
    SOURCES,
    AlignedVolumesOperator,
    FusedSeriesWriterOperator,
    FusionInferenceOperator,
    FusionSeriesSelectorOperator,
)
from mmif_monai.deploy.selection import load_rules
from mmif_monai.errors import report_user_errors
from mmif_monai.fusion.methods import NETWORK_METHOD, available_methods
from mmif_monai.io.outputs import check_output_path, check_outputs_spare_inputs
from mmif_monai.io.preflight import ENGINE_NAMES
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS

__all__ = ["FUSED_SERIES_FOLDER", "ENGINE_ENV", "FusionApp", "resolve_model_path", "main"]

#: the fused series' folder inside the output folder
FUSED_SERIES_FOLDER = "fused"
#: the environment variable that chooses the engine when ``--engine`` is not given (e.g. in a MAP)
ENGINE_ENV = "MMIF_ENGINE"


def resolve_model_path(path: str | Path) -> Path:
    """The weights file at ``path``: the file itself, or the one ``*.pt`` file in a folder (a MAP's models folder
    holds each model in a subfolder).

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: the folder holds no ``.pt`` file or several.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: model not found (set -m or HOLOSCAN_MODEL_PATH to the weights file)")
    # the bundle's models folder also ships the LatLRR projection, which is not a model
    candidates = sorted(p for p in path.rglob("*.pt") if p.name != default_projection_path().name)
    if len(candidates) != 1:
        found = ", ".join(str(p.relative_to(path)) for p in candidates) or "none"
        raise ValueError(f"{path}: expected one model weights file (.pt) in this folder, found {found}")
    return candidates[0]


class FusionApp(Application):
    """Fuses the anatomical and functional series of a DICOM study into a new DICOM series (module docstring).

    Args:
        rules: series selection rules (:func:`~mmif_monai.deploy.selection.load_rules`); None: the defaults.
        method: ``mmif-net`` (the bundle's network) or a classical baseline name.
        device: torch device for the network; None: CUDA when available, else CPU.
        engine: what runs the network (:mod:`mmif_monai.fusion.engines`): ``auto``, ``torch``, ``onnxruntime``,
            ``openvino``.
        register: False (the headers' geometry), ``"rigid"`` or ``"affine"`` (ITK registration first).
        overwrite: replace an existing ``OUT_DIR/fused``.
    """

    def __init__(
        self,
        *args,
        rules: dict | None = None,
        method: str = NETWORK_METHOD,
        device: str | None = None,
        engine: str = "auto",
        register: bool | str = False,
        overwrite: bool = False,
        **kwargs,
    ):
        self._rules = rules if rules is not None else load_rules()
        self._method = method
        self._device = device
        self._engine = engine
        self._register = register
        self._overwrite = overwrite
        super().__init__(*args, **kwargs)

    def compose(self):
        # the SDK's argument and environment handling; only the model default is ours (the bundle's weights)
        runtime_env = RuntimeEnv(defaults={"model": ("HOLOSCAN_MODEL_PATH", str(DEFAULT_WEIGHTS))})
        context = Application.init_app_context(self.argv, runtime_env)
        study_folder = Path(context.input_path).absolute()
        if not study_folder.is_dir():
            raise FileNotFoundError(f"{study_folder}: study folder not found (set -i or HOLOSCAN_INPUT_PATH)")
        series_out = Path(context.output_path) / FUSED_SERIES_FOLDER
        # the fused series never lands in the study it is made from (mmif fuse's rule), even with --overwrite
        check_outputs_spare_inputs([series_out], [study_folder])
        check_output_path(series_out, self._overwrite, kind="series")
        model_path = resolve_model_path(context.model_path) if self._method == NETWORK_METHOD else None
        device = self._device or ("cuda" if _cuda_available() else "cpu")

        loader = DICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=study_folder, name="study_loader")
        selector = FusionSeriesSelectorOperator(
            self, study_folder=study_folder, rules=self._rules, name="series_selector"
        )
        aligner = AlignedVolumesOperator(self, study_folder=study_folder, register=self._register, name="aligner")
        fusion = FusionInferenceOperator(
            self, model_path=model_path, method=self._method, device=device, engine=self._engine, name="fusion"
        )
        writer = FusedSeriesWriterOperator(self, output_folder=series_out, overwrite=self._overwrite, name="writer")

        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, aligner, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(aligner, fusion, {(ALIGNED, ALIGNED)})
        self.add_flow(fusion, writer, {("fused", "fused"), ("description", "description")})
        self.add_flow(aligner, writer, {(ALIGNED, ALIGNED), (SOURCES, SOURCES)})


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmif_monai.deploy.app",
        description="Fuse the anatomical (CT/MR) and functional (PT/NM or a second MR) series of a DICOM study "
        "into a new DICOM series OUT_DIR/fused (MONAI Deploy application).",
    )
    parser.add_argument("-i", "--input", help="DICOM study folder (default: $HOLOSCAN_INPUT_PATH, else ./input)")
    parser.add_argument("-o", "--output", help="output folder (default: $HOLOSCAN_OUTPUT_PATH, else ./output)")
    parser.add_argument(
        "-m",
        "--model",
        help="MMIF-Net weights file, or a folder holding one .pt file (default: "
        "$HOLOSCAN_MODEL_PATH, else the bundle's models/model.pt)",
    )
    parser.add_argument("-w", "--workdir", help="SDK work folder (default: $HOLOSCAN_WORKDIR)")
    parser.add_argument(
        "--rules", help="series selection rules, MONAI Deploy selector JSON (default: series_rules.json)"
    )
    parser.add_argument("--method", default=NETWORK_METHOD, choices=available_methods(), help="fusion method")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--engine", choices=ENGINE_NAMES, default=os.environ.get(ENGINE_ENV) or "auto",
        help=f"what runs the network (default: ${ENGINE_ENV}, else auto: the faster ONNX runtime on the CPU, torch on"
        " a GPU)",
    )  # fmt: skip
    parser.add_argument("--register", choices=("rigid", "affine"), help="register the functional series first (ITK)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR/fused")
    parser.add_argument(
        "-l",
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"),
        help="SDK log level, with --debug (default: INFO)",
    )
    parser.add_argument("--debug", action="store_true", help="show the SDK's and Holoscan's logs and tracebacks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # without --debug stderr carries nothing but our one-line error; progress goes to stdout
    progress = logging.StreamHandler(sys.stdout)
    progress.setFormatter(logging.Formatter("%(message)s"))
    progress_logger = logging.getLogger("mmif_monai.deploy")
    progress_logger.addHandler(progress)
    progress_logger.setLevel(logging.INFO)
    progress_logger.propagate = args.debug
    if not args.debug:
        set_log_level(LogLevel.OFF)
        logging.captureWarnings(True)
    # paths reach the SDK as its environment variables rather than as -i/-o: its argument parser creates the
    # output folder on parsing, before any input is checked, and nothing may be written for a bad input
    for option in ("input", "output", "model", "workdir"):
        if getattr(args, option) is not None:
            variable = RuntimeEnv.ENV_DEFAULT[option][0]  # HOLOSCAN_INPUT_PATH...
            os.environ[variable] = str(Path(getattr(args, option)).absolute())
    sdk_argv = [sys.executable, sys.argv[0], "-l", (args.log_level or "INFO") if args.debug else "CRITICAL"]

    def run() -> None:
        if args.input is not None and not Path(args.input).exists():
            raise FileNotFoundError(f"{args.input}: study folder not found")
        app = FusionApp(
            sdk_argv,
            rules=load_rules(args.rules),
            method=args.method,
            device=args.device,
            engine=args.engine,
            register=args.register or False,
            overwrite=args.overwrite,
        )
        app.run()

    return report_user_errors("mmif-deploy", run, debug=args.debug, extra=(MONAIAppSdkError,))


if __name__ == "__main__":
    sys.exit(main())
