"""Run the MONAI model-zoo's checks of the MMIF-Net bundle offline (library: ``mmif_monai.bundle_checks``).

    python scripts/verify_bundle.py

Files, version and changelog, metadata schema, the properties of every shipped workflow (train, fine-tune,
evaluate, infer; built on the sample pairs), network input and output, TorchScript export. Exits non-zero
on the first check that fails.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from mmif_monai.bundle_checks import verify_bundle
from mmif_monai.io.paths import BUNDLE_DIR, REPO_ROOT, SAMPLES_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=BUNDLE_DIR, help="bundle folder (default: %(default)s)")
    parser.add_argument(
        "--schema",
        type=Path,
        default=REPO_ROOT / "tests" / "data" / "meta_schema_20240725.json",
        help="MONAI's metadata schema file (default: %(default)s)",
    )
    parser.add_argument(
        "--dataset-dir", type=Path, default=SAMPLES_DIR, help="data the workflows are built on (default: %(default)s)"
    )
    parser.add_argument(
        "--validation-cases", type=int, nargs="+", default=[37], help="held-out atlas cases (default: %(default)s)"
    )
    args = parser.parse_args()
    overrides = {"dataset_dir": str(args.dataset_dir), "validation_cases": args.validation_cases, "num_workers": 0}
    with tempfile.TemporaryDirectory() as work_dir:
        verify_bundle(args.bundle, args.schema, work_dir, overrides)
    print(f"{args.bundle}: all model-zoo checks passed")


if __name__ == "__main__":
    main()
