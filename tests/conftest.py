"""Fixtures shared by the test modules.

Plain values that modules need at import time (the tiny search spaces, a synthetic latency table) live
in `helpers.py`, since a conftest module is not meant to be imported.
"""

import pytest

from proxyless.data import Splits, load_splits


@pytest.fixture(scope="session")
def sample_splits() -> Splits:
    """The embedded CIFAR-10 sample at 32 px, decoded once per session; tests take subsets of it and
    never change it."""
    return load_splits("sample", 32, progress=False)
