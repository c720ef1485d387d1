"""``python -m mmif_monai.label APP_DIR``: write a MONAI Label app folder and print the command that serves it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mmif_monai.label import SERVER_APP, write_app_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmif_monai.label", description=__doc__)
    parser.add_argument("app_dir", help="the app folder to create (holds main.py; MONAI Label adds model/, logs/...)")
    args = parser.parse_args(argv)
    try:
        main_py = write_app_dir(args.app_dir)
    except OSError as error:
        print(f"mmif-label: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {main_py}")
    command = f"monailabel start_server --app {args.app_dir} --studies STUDIES_DIR --uvicorn_app {SERVER_APP}"
    print(f"serve it with: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
