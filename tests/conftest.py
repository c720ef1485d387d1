"""Every test starts from the same random state, so a test that draws random inputs sees the same ones in CI
as on a developer's machine."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_random_state():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
