"""Score candidate weights against the quality targets, on the validation split and its shifted variant, with their
colour and bone fidelity, in one table (``mmif_monai.studies.candidates``).

    python scripts/compare_candidates.py shipped=bundles/mmif_net/models/model.pt new=CK/model.pt \
        --doc OUT/candidates.md

Each candidate is ``NAME=FILE`` (a state dict or training checkpoint). Fused images are kept under ``--out`` per
weights digest, so a rerun with one more candidate fuses only that one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmif_monai.errors import report_user_errors
from mmif_monai.io.aanlib import DEFAULT_VALIDATION_CASES
from mmif_monai.io.paths import DEFAULT_DATASET_DIR, REPO_ROOT
from mmif_monai.studies.candidates import CandidateSettings, run_candidate_comparison


def _candidate(text: str) -> tuple[str, Path]:
    """``NAME=FILE`` as a pair."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", type=_candidate, metavar="NAME=FILE")
    parser.add_argument("--dataset-dir", type=Path, default=DEFAULT_DATASET_DIR)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "candidates")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "outputs" / "candidates" / "candidates.md")
    parser.add_argument("--validation-cases", type=int, nargs="+", default=list(DEFAULT_VALIDATION_CASES))
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each type")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--released", nargs="+", type=_candidate, default=[], metavar="METHOD=FILE",
        help="the authors' released weights of a compared network (densefuse, ifcnn; as mmif compare --released)",
    )  # fmt: skip
    args = parser.parse_args()
    settings = CandidateSettings(
        dict(args.candidates), args.out, args.doc, args.dataset_dir, args.validation_cases, args.limit, args.device,
        dict(args.released),
    )  # fmt: skip
    sys.exit(report_user_errors("compare_candidates", lambda: run_candidate_comparison(settings)))


if __name__ == "__main__":
    main()
