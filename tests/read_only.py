"""A folder nothing can be written into, for the tests of unwritable outputs and stores."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """``path`` (created) made unwritable while the context lasts: its write permission removed, or, for root,
    whom permission bits do not stop, its immutable attribute set (``chattr +i``, which stops root too). Skips the
    test where neither makes the folder unwritable (root without the attribute, e.g. on some file systems)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)

        def undo() -> None:
            path.chmod(mode)
    else:
        if (
            shutil.which("chattr") is None
            or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode
        ):
            pytest.skip("running as root and chattr +i is not available: no folder is read-only to root here")

        def undo() -> None:
            subprocess.run(["chattr", "-i", str(path)], check=True)

    try:
        try:
            (path / ".probe").touch()
        except OSError:
            pass
        else:
            (path / ".probe").unlink()
            pytest.skip(f"{path} stays writable here")
        yield path
    finally:
        undo()
