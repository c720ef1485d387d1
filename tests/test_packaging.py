"""A non-editable install: the wheel carries the bundles (configs, trained weights) and the sample pairs, and the
installed package finds them outside any checkout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# builds and installs a wheel: left out of the quick run (pytest -m "not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_install_fuses_the_samples_with_the_shipped_weights(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("mmif_monai-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    # PYTHONPATH comes before the editable install's finder, so the wheel's copy is what gets imported
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = (
        "import json, mmif_monai; from mmif_monai.io.paths import BUNDLE_DIR, SAMPLES_DIR; "
        "from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, PAPER_WEIGHTS, read_checkpoint; "
        "print(json.dumps([mmif_monai.__file__, str(BUNDLE_DIR), str(SAMPLES_DIR), DEFAULT_WEIGHTS.is_file(), "
        "read_checkpoint(PAPER_WEIGHTS)[1]]))"
    )
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    package, bundle, samples, weights_found, paper_network = json.loads(found.stdout.strip().splitlines()[-1])
    assert all(Path(path).is_relative_to(site) for path in (package, bundle, samples)), found.stdout
    # both shipped configurations' weights: the default and the paper's (a plain state dict: no recorded network)
    assert weights_found and paper_network == {}
    demo = subprocess.run(
        [sys.executable, "-m", "mmif_monai.cli.main", "demo", "-o", str(tmp_path / "demo")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert f"trained weights {site}" in demo.stdout
    assert len(list((tmp_path / "demo").glob("*/*.png"))) == 6
    # the installed bundle runs as MONAI runs bundles, on its default data (the packaged sample pairs)
    configs = Path(bundle) / "configs"
    inference = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference", "--bundle_root", bundle,
         "--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "inference.json"),
         "--output_dir", str(tmp_path / "bundle_out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert inference.returncode == 0, inference.stderr[-2000:]
    assert len(list((tmp_path / "bundle_out").rglob("fused/*.png"))) == 6


def test_the_bundle_requires_this_package_at_the_version_pyproject_builds():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    metadata = json.loads((ROOT / "bundles" / "mmif_net" / "configs" / "metadata.json").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = metadata["required_packages_version"]
    assert required[project["name"]] == project["version"]
    pins = dict(dep.split("==") for dep in project["dependencies"] if "==" in dep)
    assert all(pins[name] == version for name, version in required.items() if name != project["name"])
