"""Fixtures of the torch adapter tests."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_nets import Net  # noqa: E402


@pytest.fixture
def net():
    torch.manual_seed(0)
    module = Net()
    with torch.no_grad():  # non-trivial BN statistics, so eval and train mode differ
        module.bn.running_mean.fill_(0.3)
        module.bn.running_var.fill_(2.0)
    return module


@pytest.fixture
def images(rng):
    return rng.normal(size=(5, 1, 8, 8)).astype(np.float32)
