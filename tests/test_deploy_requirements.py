"""The MAP's ``mmif_monai/deploy/requirements.txt`` is what the Deploy app needs, no more and no less.

The app, staged as docs/deploy.md stages it for ``monai-deploy package``, runs on an MR + PET DICOM study with
``--register rigid`` (so every code path that imports a package is taken) in a virtual environment that holds only
what a MAP holds: the distributions the file names, the SDK and Holoscan that the packager adds, and what each of
them requires, as pip would install them. A distribution the file names that the app's own code does not import
(highdicom: the SDK loads it; onnxscript: torch's exporter loads it) must be one the app fails without.

A fresh ``pip install -r requirements.txt`` would download torch, Holoscan and CuPy (gigabytes) on every run, and
this machine has no copy of most of them to install offline. The virtual environment is therefore a plain venv
(no system site-packages) whose site-packages links the installed files (``RECORD``) of exactly those distributions
from the environment running the tests.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytest.importorskip("monai.deploy.core", reason="needs the [deploy] extra", exc_type=ModuleNotFoundError)

from mmif_monai.fusion.engines import CACHE_ENV, CPU_ENGINE  # noqa: E402
from mmif_monai.io.dicom_series import save_series, set_pixels, slice_datasets  # noqa: E402
from mmif_monai.io.volumes import load_volume  # noqa: E402
from mmif_monai.phantoms import phantom_volume, write_phantom_dicom_study  # noqa: E402

# stages the app and runs it in a subprocess: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "mmif_monai/deploy/requirements.txt"
#: what `monai-deploy package` installs besides requirements.txt (docs/deploy.md)
PACKAGER_INSTALLS = ("holoscan-cu13", "monai-deploy-app-sdk")
# MR 64 x 64 x 12 voxels, PET 32 x 32 x 8 on another grid
SHAPE = (64, 64, 12)
#: the MAP's entry point, as docs/deploy.md writes it
APP_MAIN = "from mmif_monai.deploy.app import main\n\nraise SystemExit(main())\n"
# runs the staged app as `python APP_DIR ...` does, then prints the distributions whose modules import statements
# in mmif_monai's own modules loaded
PROBE = """
import atexit, builtins, importlib.metadata, json, runpy, sys

imported = set()
plain_import = builtins.__import__

def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and globals and str(globals.get("__name__", "")).partition(".")[0] == "mmif_monai":
        imported.add(name.partition(".")[0])
    return plain_import(name, globals, locals, fromlist, level)

def report():
    found = importlib.metadata.packages_distributions()
    print(json.dumps(sorted({dist for top in imported for dist in found.get(top, [])})))

builtins.__import__ = recording_import
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def _installed_closure(requirements: Iterable[Requirement]) -> list[importlib.metadata.Distribution]:
    """The installed distributions pip would install for ``requirements``: each, and recursively what it requires
    (environment markers and extras evaluated); each must be installed, at a version its requirement allows."""
    found: dict[str, importlib.metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()  # (distribution, extra) already followed
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = [extra for extra in sorted(requirement.extras) or [""] if (name, extra) not in done]
        if not extras:
            continue
        dist = found.get(name) or importlib.metadata.distribution(requirement.name)
        assert requirement.specifier.contains(dist.version, prereleases=True), f"{requirement}: {dist.version}"
        found[name] = dist
        done.update((name, extra) for extra in extras)
        for line in dist.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(needed)
    return list(found.values())


def _imported_by(requirement: Requirement, imported: set[str], listed: set[str]) -> bool:
    """Whether ``imported`` (the probe's distributions) holds the distribution ``requirement`` names; one with no
    modules of its own (a metapackage such as itk) counts through those it requires that the file does not name."""
    dist = importlib.metadata.distribution(requirement.name)
    if any(not file.parts[0].endswith(".dist-info") for file in dist.files or []):
        return canonicalize_name(requirement.name) in imported
    brought = {canonicalize_name(Requirement(line).name) for line in dist.requires or []} - listed
    return bool(brought & imported)


def _top_level_modules(name: str) -> set[str]:
    return {
        top
        for top, dists in importlib.metadata.packages_distributions().items()
        if name in map(canonicalize_name, dists)
    }


def _venv_with_only(folder: Path, distributions: Iterable[importlib.metadata.Distribution]) -> Path:
    """A new venv without system site-packages whose site-packages links each installed file of ``distributions``;
    returns its python."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([python, "-c", purelib], capture_output=True, text=True, check=True).stdout.strip())
    for dist in distributions:
        for file in dist.files or []:
            source, target = Path(str(dist.locate_file(file))), site / file
            # scripts (../../../bin) stay out; a file two distributions list (a shared namespace) is linked once
            if file.parts[0] == ".." or not source.exists() or target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    return python


def _staged_app(folder: Path) -> Path:
    """The application directory of docs/deploy.md: a non-editable install of the package, and ``__main__.py``."""
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels = folder / "wheels"
    subprocess.run([*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("mmif_monai-*.whl")
    app = folder / "app"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(app), str(wheel)], check=True)
    (app / "__main__.py").write_text(APP_MAIN)
    return app


def _mr_pet_study(folder: Path) -> Path:
    """The phantom's PET/CT study with the CT series replaced by an MR series (T1-like values) on the CT's grid."""
    phantom = write_phantom_dicom_study(folder, shape=SHAPE)
    ct = load_volume(phantom.ct_dir)
    mr = phantom_volume("MR", np.asarray(ct.affine), SHAPE)
    base = pydicom.dcmread(next(phantom.ct_dir.iterdir()), stop_before_pixels=True)  # patient, study, frame
    for keyword in ("KVP", "RescaleIntercept", "RescaleSlope", "RescaleType"):
        delattr(base, keyword)
    base.SOPClassUID, base.Modality = pydicom.uid.MRImageStorage, "MR"
    base.SeriesInstanceUID, base.SeriesDescription = pydicom.uid.generate_uid(), "T1 HEAD PHANTOM"
    datasets = slice_datasets(base, ct.affine, SHAPE[2])
    for k, ds in enumerate(datasets):
        set_pixels(ds, np.round(mr[:, :, k].T).astype(np.uint16))
    shutil.rmtree(phantom.ct_dir)
    save_series(datasets, folder / "MR")
    return folder


def _run_app(folder: Path, requirements: list[Requirement], app: Path, study: Path) -> subprocess.CompletedProcess:
    """The staged app on ``study`` (output ``folder/out``), in a venv of only ``requirements`` and the packager's."""
    python = _venv_with_only(folder / "venv", _installed_closure([*requirements, *map(Requirement, PACKAGER_INSTALLS)]))
    # nothing of this environment leaks in: no PYTHONPATH, and the working folder holds no package; an empty export
    # cache, so that every run exports the network to ONNX as a MAP's first run does (onnxscript and its onnx needed)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env[CACHE_ENV] = str(folder / "cache")
    return subprocess.run(
        [python, "-c", PROBE, str(app), "-i", str(study), "-o", str(folder / "out"), "--register", "rigid"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_the_app_runs_on_an_mr_pet_study_with_only_the_map_requirements_and_needs_each(tmp_path):
    study, app = _mr_pet_study(tmp_path / "study"), _staged_app(tmp_path)
    listed = _requirements(REQUIREMENTS)
    result = _run_app(tmp_path / "listed", listed, app, study)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "anatomical: MR" in result.stdout and "functional: PT" in result.stdout, result.stdout
    assert "rigid registration" in result.stdout, result.stdout
    assert f"engine: {CPU_ENGINE}" in result.stdout, result.stdout  # the CPU engine, exported on this first run
    fused = [pydicom.dcmread(path) for path in sorted((tmp_path / "listed/out/fused").iterdir())]
    assert len(fused) == SHAPE[2] and {ds.PhotometricInterpretation for ds in fused} == {"RGB"}  # PET colour map

    imported = {canonicalize_name(name) for name in json.loads(result.stdout.strip().splitlines()[-1])}
    names = {canonicalize_name(requirement.name) for requirement in listed}
    for requirement in (r for r in listed if not _imported_by(r, imported, names)):
        name = canonicalize_name(requirement.name)
        without = _run_app(tmp_path / f"without-{name}", [r for r in listed if r is not requirement], app, study)
        assert without.returncode != 0, f"the app runs without {requirement}: {REQUIREMENTS.name} need not name it"
        missing = [f"No module named '{top}'" for top in _top_level_modules(name)]
        assert any(text in without.stderr for text in missing), without.stderr[-3000:]
