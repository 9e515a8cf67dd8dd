"""Fixtures the sweep tests share: the test strategy registered for a module, and its data."""

from __future__ import annotations

import _sweep_helpers as h
import pytest

from harness.sources import load_market
from strategies.base import get_strategy


@pytest.fixture(scope="module")
def strategy():
    """The test strategy (tests/_sweep_helpers.py), registered while the module runs."""
    h.install()
    yield get_strategy(h.NAME)
    h.uninstall()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small dataset folder (a module may define its own)."""
    return h.write_dataset(tmp_path_factory.mktemp("data") / "hl")


@pytest.fixture(scope="module")
def market(dataset):
    return load_market(str(dataset))
