"""Every test starts from the same random state, so a test that draws random inputs sees the same ones in CI
as on a developer's machine. Hypothesis explores new inputs on every local run, but in CI (``CI`` set, as CI
runs ``.ci/run``) it is derandomised: the same examples each run, so CI cannot go red by chance.

The ONNX export cache (``mmif_monai.fusion.engines``) is one folder per test session, shared by the subprocesses the
tests start: no test reads a model a previous session or the user's own runs left in ``~/.cache/mmif-monai``."""

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True, scope="session")
def _session_export_cache(tmp_path_factory):
    from mmif_monai.fusion.engines import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("export-cache"))
    yield
    if previous is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(autouse=True)
def _seeded_random_state():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
