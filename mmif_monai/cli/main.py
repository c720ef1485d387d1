"""The ``mmif`` command: parses arguments and calls the library; one-line errors unless ``--debug``.

Every command checks its arguments and paths with the standard library first (:mod:`mmif_monai.io.preflight`) and
imports torch and MONAI only once they pass, so a mistake is reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mmif_monai.errors import report_user_errors
from mmif_monai.io.preflight import (
    COMPARISON_METHOD_NAMES,
    ENGINE_NAMES,
    FUSION_METHOD_NAMES,
    OUTPUT_FORMATS,
    SLICE_BATCH,
)

__all__ = ["main", "build_parser"]


def _count(minimum: int):
    """An argparse type: an integer of at least ``minimum``; argparse names the option in its message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "count"  # argparse shows a type's name when it fails without a message
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _path(text: str) -> Path:
    """An argparse type: a path that is not empty (``Path("")`` is ``.``, the current folder, which an empty
    argument never means)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty")
    return Path(text)


positive_int, non_negative_int = _count(1), _count(0)


def _add_method_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method", default="mmif-net", choices=FUSION_METHOD_NAMES,
        help="fusion method: mmif-net (default) or a classical baseline",
    )  # fmt: skip
    parser.add_argument("--weights", type=Path, help="MMIF-Net state dict (default: the bundle's shipped weights)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--engine", default="auto", choices=ENGINE_NAMES,
        help="what runs MMIF-Net: auto (default: the faster ONNX runtime on the CPU, torch on a GPU), torch,"
        " onnxruntime or openvino (CPU; the model is exported to ONNX once per weights file and cached)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmif", description="Multimodal medical image fusion (MMIF-Net on MONAI).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    # --debug after the command too (mmif fuse ... --debug); SUPPRESS: a command that is not given it keeps the
    # value parsed before the command
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def add_command(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[debug], **kwargs)

    fuse = add_command("fuse", help="fuse an anatomical image with a functional one (or folders of pairs)")
    inputs = fuse.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--anatomical", type=_path, help="grey anatomical image (MRI, CT) or 3D volume")
    inputs.add_argument(
        "--pairs", nargs=2, type=_path, metavar=("DIR_A", "DIR_B"), help="folders of pairs matched by name"
    )
    fuse.add_argument("--functional", type=_path, help="functional image (PET/SPECT colour, or grey CT/MRI)")
    fuse.add_argument(
        "-o",
        "--output",
        type=_path,
        required=True,
        help="output PNG, folder with --pairs; NIfTI file or DICOM folder (3D)",
    )
    fuse.add_argument(
        "--batch-size", type=positive_int, default=SLICE_BATCH,
        help=f"pairs or slices per network call (default {SLICE_BATCH}; a 3D job's memory grows with it)",
    )  # fmt: skip
    fuse.add_argument(
        "--colour-fidelity", action="store_true",
        help="keep PET/SPECT colours on their step of the colour scale: bound how far fusion moves the luminance of"
        " coloured pixels (2D slices; docs/colour.md)",
    )  # fmt: skip
    volumes = fuse.add_argument_group(
        "3D volumes", "used when --anatomical is a .nii/.nii.gz/.mha/.nrrd file or a DICOM folder (docs/volumes.md)"
    )
    volumes.add_argument("--format", choices=OUTPUT_FORMATS, help="output: NIfTI file (default) or DICOM folder")
    volumes.add_argument("--axis", help="slicing axis: axial (default), coronal, sagittal, or voxel axis 0/1/2")
    volumes.add_argument(
        "--register", nargs="?", const="rigid", choices=["rigid", "affine"], help="ITK Mattes-MI registration (rigid)"
    )
    pair = ("ANATOMICAL", "FUNCTIONAL")
    volumes.add_argument(
        "--series", nargs=2, metavar=pair,
        help="series of study folders: Modality, SeriesDescription, UID (default: the Deploy app's series rules)",
    )  # fmt: skip
    volumes.add_argument("--modalities", nargs=2, metavar=pair, help="e.g. CT PT; overrides the headers")
    _add_method_args(fuse)

    demo = add_command("demo", help="fuse the shipped sample pairs and write a preview")
    demo.add_argument("-o", "--output", type=Path, default=Path("outputs/demo"), help="output folder")
    demo.add_argument("--samples", type=Path, help="folder laid out like AANLIB (default: the shipped samples)")
    _add_method_args(demo)

    evaluate = add_command("evaluate", help="score fused images against their sources (fusion metrics)")
    evaluate.add_argument(
        "--fused", nargs="+", type=Path, required=True, help="folder(s) of fused images, one per method"
    )
    evaluate.add_argument("--method", nargs="+", help="a name per --fused folder (default: the folder names)")
    evaluate.add_argument("--a", type=Path, required=True, help="folder of anatomical source images")
    evaluate.add_argument("--b", type=Path, required=True, help="folder of functional / second source images")
    evaluate.add_argument(
        "--ssim-protocol", choices=["literature", "correct"], default="literature",
        help="SSIM's data range: literature (2, what published tables used) or correct (255); default %(default)s",
    )  # fmt: skip
    evaluate.add_argument(
        "--protocol", choices=["project", "published"], default="project",
        help="project: fused images min-max stretched, docs/metrics.md's definitions; published: CDDFuse's evaluator"
        " (images as written, MI in nats), for comparison with published tables; default %(default)s",
    )  # fmt: skip
    evaluate.add_argument(
        "-o", "--output", type=Path, default=Path("outputs/evaluate"), help="folder for CSV, table, plot"
    )
    evaluate.add_argument("--device", default=None, help="torch device for the metrics (default: cuda if present)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    evaluate.add_argument(
        "--reference", help="a method to compare the others with, image by image: paired.md (bootstrap CI, Wilcoxon p)"
    )
    tracking = evaluate.add_argument_group("MLflow", "record the evaluation as an MLflow run, e.g. a validation study")
    tracking.add_argument("--tracking", choices=["mlflow"], help="log metrics, settings and the outputs to MLflow")
    tracking.add_argument("--tracking-uri", help="MLflow store (default: sqlite database OUTPUT/mlruns.db)")
    tracking.add_argument("--experiment", default="mmif-evaluation", help="MLflow experiment (default %(default)s)")
    tracking.add_argument("--run-name", help="MLflow run name (default: one MLflow generates)")
    tracking.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a study label (repeatable)")

    compare = add_command(
        "compare",
        help="train/load DenseFuse, IFCNN, NestFuse, FusionDN, FusionGAN; compare with MMIF-Net -> docs/results.md",
    )
    compare.add_argument(
        "-o", "--output", type=Path, default=Path("outputs/compare"), help="checkpoints, fused images, metrics"
    )
    compare.add_argument("--doc", type=Path, default=Path("docs/results.md"), help="the results document to write")
    compare.add_argument("--figure", type=Path, default=Path("docs/results_grid.png"), help="the figure it shows")
    compare.add_argument(
        "--dataset-dir",
        type=Path,
        help="AANLIB-style folder (default: $MMIF_DATASET_DIR, else ../shared/data/aanlib beside the checkout)",
    )
    compare.add_argument(
        "--methods", nargs="+", choices=COMPARISON_METHOD_NAMES, help="compared networks (default: all five)"
    )
    compare.add_argument("--weights", nargs="+", default=[], metavar="METHOD=FILE", help="load instead of training")
    compare.add_argument(
        "--released", nargs="+", default=[], metavar="METHOD=FILE",
        help="the authors' released weights (e.g. densefuse=../shared/weights/densefuse_gray.model), scored in rows"
        " of their own beside the trained networks",
    )  # fmt: skip
    # the training budget, one for every compared network; unset options keep TrainingBudget's defaults
    compare.add_argument("--epochs", type=positive_int, help="training budget: epochs")
    compare.add_argument("--iterations-per-epoch", type=positive_int, help="training budget: iterations per epoch")
    compare.add_argument("--batch-size", type=positive_int, help="training budget: batch size")
    compare.add_argument("--crop-size", type=positive_int, help="training budget: side of the square random crops")
    compare.add_argument("--learning-rate", type=_positive_float, help="training budget: Adam learning rate")
    compare.add_argument(
        "--limit", type=positive_int, help="only the first N validation pairs of each type (smoke runs)"
    )
    compare.add_argument(
        "--validation-cases", type=non_negative_int, nargs="+", help="held-out atlas cases (default: the split's)"
    )
    compare.add_argument(
        "--timing-threads", type=positive_int, default=1, help="torch threads for the CPU ms/pair timing"
    )
    compare.add_argument(
        "--timing-repeats", type=positive_int, default=5, help="timed fusions per method (median reported)"
    )
    compare.add_argument("--device", default="cpu", help="torch device for training, fusion and metrics")

    phantom = add_command("phantom", help="write a PET/CT head phantom (NIfTI files or a DICOM study) to try mmif fuse")
    phantom.add_argument(
        "-o", "--output", type=_path, default=Path("outputs/phantom"), help="folder to write into (default %(default)s)"
    )
    phantom.add_argument(
        "--format", choices=OUTPUT_FORMATS, default="nifti",
        help="nifti: ct.nii.gz and pet.nii.gz; dicom: a study folder with the series CT/ and PT/ (default %(default)s)",
    )  # fmt: skip
    phantom.add_argument(
        "--shape", nargs=3, type=_count(16), default=[64, 64, 64], metavar=("X", "Y", "Z"),
        help="CT voxels per axis, each at least 16 (default 64 64 64); the PET has half as many",
    )  # fmt: skip
    return parser


def _say(line: str) -> None:
    """Print a note of a running job at once, also into a pipe or a log file (which Python would buffer)."""
    print(line, flush=True)


def _fuse(args: argparse.Namespace) -> None:
    # paths and options first, with the standard library only: a mistake fails before the network stack loads
    from mmif_monai.io.preflight import (
        FileJob,
        check_file_jobs,
        check_volume_job,
        check_weights_file,
        is_volume_path,
        match_pair_folders,
    )

    volume = args.anatomical is not None and is_volume_path(args.anatomical)
    if not volume and any(
        getattr(args, name) is not None for name in ("format", "axis", "register", "series", "modalities")
    ):
        raise ValueError("--format, --axis, --register, --series and --modalities apply to 3D volumes only")
    if volume and args.colour_fidelity:
        raise ValueError("--colour-fidelity applies to 2D slices (pseudo-colour PET/SPECT), not to 3D volumes")
    if args.anatomical is not None and args.functional is None:
        raise ValueError("--anatomical needs --functional")
    if args.weights is not None:
        check_weights_file(args.weights)
    if volume:
        check_volume_job(
            args.anatomical,
            args.functional,
            args.output,
            args.format or "nifti",
            args.register or False,
            args.overwrite,
        )
        return _fuse_volumes(args)
    jobs = (
        match_pair_folders(args.pairs[0], args.pairs[1], args.output)
        if args.pairs
        else [FileJob(args.anatomical, args.functional, args.output)]
    )
    check_file_jobs(jobs, args.overwrite)

    from mmif_monai.devices import resolve_device

    device = resolve_device(args.device)
    from mmif_monai.fusion.colour import COLOUR_FIDELITY
    from mmif_monai.jobs.slices import run_file_jobs

    result = run_file_jobs(
        jobs,
        args.method,
        args.weights,
        device,
        args.overwrite,
        batch_size=args.batch_size,
        report=_say,
        luminance_limit=COLOUR_FIDELITY if args.colour_fidelity else None,
        engine=args.engine,
    )
    print(f"wrote {len(result.outputs)} fused image(s) to {args.output}")
    print(result.summary())


def _fuse_volumes(args: argparse.Namespace) -> None:
    from mmif_monai.devices import resolve_device
    from mmif_monai.jobs.volumes import fuse_volume_files

    result = fuse_volume_files(
        args.anatomical,
        args.functional,
        args.output,
        output_format=args.format or "nifti",
        method=args.method,
        weights=args.weights,
        device=resolve_device(args.device),
        register=args.register or False,
        axis=args.axis or "axial",
        overwrite=args.overwrite,
        series=args.series,
        batch_size=args.batch_size,
        modalities=args.modalities or (None, None),
        report=_say,
        progress=True,
        engine=args.engine,
    )
    print("wrote " + ", ".join(str(path) for path in result.outputs))
    print(result.summary())


def _demo(args: argparse.Namespace) -> None:
    from mmif_monai.io.outputs import check_output_path
    from mmif_monai.io.paths import SAMPLES_DIR
    from mmif_monai.io.preflight import check_file_jobs, check_weights_file, dataset_folder_jobs

    samples = args.samples or SAMPLES_DIR
    check_file_jobs(dataset_folder_jobs(samples, args.output), args.overwrite)
    check_output_path(args.output / "preview.png", args.overwrite)
    if args.weights is not None:
        check_weights_file(args.weights)

    from mmif_monai.devices import resolve_device
    from mmif_monai.jobs.samples import fuse_dataset_folder

    result = fuse_dataset_folder(
        samples,
        args.output,
        args.method,
        args.weights,
        args.overwrite,
        resolve_device(args.device),
        report=_say,
        engine=args.engine,
    )
    *fused, preview = result.outputs
    print(f"wrote {len(fused)} fused image(s) under {args.output}; preview: {preview}")
    print(result.summary())


def _evaluate(args: argparse.Namespace) -> None:
    from mmif_monai.io.preflight import check_evaluation_job, check_protocol_pair, check_tracking_store

    methods = args.method or [folder.name for folder in args.fused]
    if len(methods) != len(args.fused) or len(set(methods)) != len(methods):
        raise ValueError("--method needs one distinct name per --fused folder")
    if args.tracking is None and (args.tag or args.run_name or args.tracking_uri):
        raise ValueError("--tag, --run-name and --tracking-uri label an MLflow run: add --tracking mlflow")
    malformed_tags = [tag for tag in args.tag if "=" not in tag]
    if malformed_tags:
        raise ValueError(f"--tag needs KEY=VALUE, got {malformed_tags}")
    check_protocol_pair(args.protocol, args.ssim_protocol)
    # before scoring, which takes long, and before torch is imported
    check_evaluation_job(dict(zip(methods, args.fused)), args.a, args.b, args.output, args.overwrite, args.reference)
    if args.tracking == "mlflow":
        check_tracking_store(_tracking_uri(args))

    from mmif_monai.metrics.report import evaluate_folders, write_evaluation

    results = evaluate_folders(
        dict(zip(methods, args.fused)), args.a, args.b, args.ssim_protocol, device=args.device, protocol=args.protocol
    )
    table, written = write_evaluation(
        results, args.output, args.a, args.b, args.ssim_protocol, args.overwrite, args.reference, args.protocol
    )
    print(table)
    print("wrote " + ", ".join(str(p) for p in written))
    if args.tracking == "mlflow":
        _track_evaluation(args, results, methods, written)


def _tracking_uri(args: argparse.Namespace) -> str:
    """The MLflow store of ``mmif evaluate --tracking mlflow``: ``--tracking-uri``, else OUTPUT/mlruns.db."""
    return args.tracking_uri or f"sqlite:///{args.output.resolve() / 'mlruns.db'}"


def _track_evaluation(args: argparse.Namespace, results: dict, methods: list[str], written: list[Path]) -> None:
    from mmif_monai.engines import log_evaluation_run
    from mmif_monai.io.preflight import image_names
    from mmif_monai.metrics.report import summarise

    output = args.output.resolve()
    tracking_uri = _tracking_uri(args)
    images = len(image_names(args.a, args.b))
    params = {
        "methods": ", ".join(methods),
        "protocol": args.protocol,
        "ssim_protocol": args.ssim_protocol,
        "images": images,
    }
    if args.reference is not None:
        params["reference"] = args.reference
    tags = dict(tag.split("=", 1) for tag in args.tag)
    run_id = log_evaluation_run(
        summarise(results), written, tracking_uri, args.experiment, params, tags, args.run_name,
        artifact_location=None if args.tracking_uri else (output / "mlruns").as_uri(),
    )  # fmt: skip
    print(f"MLflow run {run_id} in {tracking_uri} (experiment {args.experiment})")


def _method_files(option: str, items: list[str]) -> dict[str, Path]:
    """``METHOD=FILE`` items as method -> file, each a compared network's name."""
    files = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"{option} expects METHOD=FILE, got {item!r}")
        if name not in COMPARISON_METHOD_NAMES:
            raise ValueError(f"{option}: unknown method {name!r}; choose from {', '.join(COMPARISON_METHOD_NAMES)}")
        files[name] = Path(path)
    return files


def _compare(args: argparse.Namespace) -> None:
    from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES, list_pairs
    from mmif_monai.io.paths import DEFAULT_DATASET_DIR

    # the command line's own mistakes first: they do not depend on what this machine holds
    weights, released = _method_files("--weights", args.weights), _method_files("--released", args.released)
    if args.dataset_dir is None and not DEFAULT_DATASET_DIR.is_dir():
        raise FileNotFoundError(
            f"no data set at the default {DEFAULT_DATASET_DIR}: give --dataset-dir DIR or set MMIF_DATASET_DIR"
        )
    for option, files in (("--weights", weights), ("--released", released)):
        for name, path in files.items():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: {option} file for {name} not found")
    list_pairs(args.dataset_dir or DEFAULT_DATASET_DIR)  # the data set's layout, before torch is imported

    from mmif_monai.studies import COMPARISON_METHODS, ComparisonSettings, TrainingBudget, run_comparison

    given = {
        "epochs": args.epochs,
        "iterations_per_epoch": args.iterations_per_epoch,
        "batch_size": args.batch_size,
        "crop_size": args.crop_size,
        "learning_rate": args.learning_rate,
    }
    budget = TrainingBudget(**{name: value for name, value in given.items() if value is not None})
    settings = ComparisonSettings(
        out_dir=args.output,
        doc=args.doc,
        figure=args.figure,
        dataset_dir=args.dataset_dir or DEFAULT_DATASET_DIR,
        budget=budget,
        methods=args.methods or list(COMPARISON_METHODS),
        weights=weights,
        released=released,
        limit=args.limit,
        validation_cases=tuple(args.validation_cases or DEFAULT_VALIDATION_CASES),
        timing_threads=args.timing_threads,
        timing_repeats=args.timing_repeats,
        device=args.device,
    )
    run_comparison(settings)


def _phantom(args: argparse.Namespace) -> None:
    from mmif_monai.io.outputs import check_output_path, staged_outputs
    from mmif_monai.io.preflight import phantom_output_paths

    outputs = phantom_output_paths(args.output, args.format)
    for path in outputs:
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{path}: exists; write the phantom into a new folder")
        check_output_path(path, overwrite=False, kind="series" if args.format == "dicom" else "file")

    from mmif_monai.phantoms import write_phantom_dicom_study, write_phantom_nifti

    write = write_phantom_dicom_study if args.format == "dicom" else write_phantom_nifti
    with staged_outputs(outputs, overwrite=False) as staged:
        write(staged[0].parent, shape=tuple(args.shape))
    print(f"wrote a PET/CT head phantom ({' x '.join(map(str, args.shape))} CT voxels): {outputs[0]}, {outputs[1]}")
    if args.format == "dicom":
        command = f"mmif fuse --anatomical {args.output} --functional {args.output} --format dicom -o OUT_DIR"
    else:
        command = f"mmif fuse --anatomical {outputs[0]} --functional {outputs[1]} -o fused.nii.gz"
    print(f"fuse it: {command}")


COMMANDS = {"fuse": _fuse, "demo": _demo, "evaluate": _evaluate, "compare": _compare, "phantom": _phantom}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # library warnings (and third-party ones, routed through logging) only with --debug: without it stderr
    # carries nothing but our one-line error; what matters to users (which model ran) goes to stdout
    logging.captureWarnings(True)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR, format="%(levelname)s: %(message)s")
    return report_user_errors("mmif", lambda: COMMANDS[args.command](args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
