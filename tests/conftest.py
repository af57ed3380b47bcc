"""Shared fixtures: the real CIFAR-10 folder comes from ``TD_ANALYSIS_DATA`` (never hard-coded),
and every test runs in a pinned environment (CPU kernels, threads, ``TQDM_*``, ``TD_ANALYSIS_*``),
whatever the user's shell has set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from td_analysis import pin_cpu_kernels

# session start, before torch is imported: this process and every process a test starts (the CLI,
# ``python -m``, spawned workers, which inherit the environment) compute with the pinned CPU
# kernels, as ``td-analysis`` does (td_analysis.utils.reproducibility; TD_ANALYSIS_NATIVE_KERNELS=1
# in the shell turns it off)
pin_cpu_kernels()

import torch  # noqa: E402 - after the kernels are pinned

#: intra-op threads of every test and of the processes tests start (``OMP_NUM_THREADS`` etc.);
#: a test that needs another count sets it explicitly (``test_reproducibility.py``)
TEST_THREADS = 1
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: ``TD_ANALYSIS_*`` variables a test may inherit from the shell: the data folder, and the
#: explorer test's screenshot path (an output, never changes a result)
INHERITED = ("TD_ANALYSIS_DATA", "TD_ANALYSIS_SCREENSHOT")


@pytest.fixture(scope="session", autouse=True)
def _pinned_threads() -> None:
    """One intra-op thread here and in every subprocess, whatever ``OMP_NUM_THREADS`` says:
    results (last bits, timing-sensitive progress lines) never depend on the shell."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    before = torch.get_num_threads()
    for name in THREAD_VARIABLES:
        os.environ[name] = str(TEST_THREADS)
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(before)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _pinned_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """No ``TQDM_*`` variable (``TQDM_DISABLE=1`` would hide a forced bar), no ``TD_ANALYSIS_*``
    but :data:`INHERITED` (progress mode and interval, cache, runs, quick mode, native kernels
    take their defaults), the cache in a per-session folder (never the user's), and the
    progress mode back to the environment's choice; tests set what they need on top."""
    for name in list(os.environ):
        if name.startswith("TQDM_") or (name.startswith("TD_ANALYSIS_") and name not in INHERITED):
            monkeypatch.delenv(name)
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, str(TEST_THREADS))
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    from td_analysis.utils import progress

    progress.set_progress_mode(None)
    yield
    progress.set_progress_mode(None)


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


#: the longest test files (minutes each on the 2-core CI machine), collected first so that with
#: ``pytest -n 2 --dist loadfile`` (CI) no long file starts last while the other worker idles
LONG_FILES = (
    "test_notebooks.py",
    "test_reproducibility.py",
    "test_reproduce.py",
    "test_resnet_reproduce.py",
    "test_explore.py",
    "test_fashion_reproduce.py",
    "test_cli_faults.py",
    "test_cli_validation.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of :data:`LONG_FILES` first, in that order; every other test as collected."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
