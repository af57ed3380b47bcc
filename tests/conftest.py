"""Shared fixtures: the real CIFAR-10 folder comes from ``TD_ANALYSIS_DATA`` (never hard-coded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding ``cifar-10-batches-py`` (``TD_ANALYSIS_DATA``); skip if unset locally."""
    value = os.environ.get("TD_ANALYSIS_DATA")
    if not value:
        if os.environ.get("CI"):
            pytest.fail("TD_ANALYSIS_DATA must point at the CIFAR-10 data in CI")
        pytest.skip("TD_ANALYSIS_DATA is not set: real-data tests skipped")
    root = Path(value).resolve()  # absolute: notebook kernels start in notebooks/
    if not root.exists():
        pytest.fail(f"TD_ANALYSIS_DATA={value} does not exist")
    return root


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny matmuls are many times slower with 2 intra-op threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
