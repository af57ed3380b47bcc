"""Names and modules that stay importable after their code moved elsewhere.

* A module lends old names through :func:`moved_names` as its ``__getattr__`` (PEP 562): the
  domain modules keep the old names of their command-line code (now in :mod:`td_analysis.cli`)
  without importing the command line, which imports them.
* :data:`MOVED_MODULES` maps the flat modules of the first layout (``td_analysis.taylor``, …) to
  their folders (issue #20); :func:`install_module_aliases` (run by ``import td_analysis``) makes
  ``import td_analysis.taylor`` return the very module ``td_analysis.analysis.taylor``, so old
  imports, pickles and ``monkeypatch.setattr`` on either name act on one object, and
  ``python -m td_analysis.training_length`` still runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["MOVED_MODULES", "install_module_aliases", "moved_names"]

#: old module path → its home since the package was split into folders (``td_analysis.training``,
#: the dense loop's module, is now the package ``training/``, which lends the loop's names)
MOVED_MODULES: Mapping[str, str] = {
    "td_analysis.io": "td_analysis.utils.io",
    "td_analysis.progress": "td_analysis.utils.progress",
    "td_analysis.kernels": "td_analysis.utils.kernels",
    "td_analysis.reproducibility": "td_analysis.utils.reproducibility",
    "td_analysis.cache": "td_analysis.utils.cache",
    "td_analysis.moved": "td_analysis.utils.moved",
    "td_analysis.nbexec": "td_analysis.utils.nbexec",
    "td_analysis.cliargs": "td_analysis.utils.cliargs",
    "td_analysis.names": "td_analysis.catalog.names",
    "td_analysis.dataset_registry": "td_analysis.catalog.datasets",
    "td_analysis.regulariser_config": "td_analysis.catalog.regularisers",
    "td_analysis.models": "td_analysis.nets.models",
    "td_analysis.nets_resnet": "td_analysis.nets.resnet",
    "td_analysis.dropout": "td_analysis.nn.dropout",
    "td_analysis.config": "td_analysis.training.config",
    "td_analysis.tasks": "td_analysis.training.tasks",
    "td_analysis.fit": "td_analysis.training.fit",
    "td_analysis.runs": "td_analysis.training.runs",
    "td_analysis.executors": "td_analysis.training.executors",
    "td_analysis.usermodels": "td_analysis.training.usermodels",
    "td_analysis.pruning": "td_analysis.analysis.pruning",
    "td_analysis.coadaptation": "td_analysis.analysis.coadaptation",
    "td_analysis.taylor": "td_analysis.analysis.taylor",
    "td_analysis.spectra": "td_analysis.analysis.spectra",
    "td_analysis.statistics": "td_analysis.analysis.statistics",
    "td_analysis.experiments": "td_analysis.pipelines.toy",
    "td_analysis.experiments_fashion": "td_analysis.pipelines.fashion_mlp",
    "td_analysis.experiments_resnet": "td_analysis.pipelines.resnet",
    "td_analysis.training_length": "td_analysis.pipelines.training_length",
    "td_analysis.protocol_study": "td_analysis.pipelines.protocol_study",
    "td_analysis.plotting": "td_analysis.report.plotting",
    "td_analysis.reports": "td_analysis.report.compat",
}


def moved_names(module: str, homes: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module``: ``name`` of ``homes`` (``{name: (home module,
    its name there)}``) is imported from its home when asked for; any other name is an
    ``AttributeError``, as for a plain module."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            home, attr = homes[name]
            return getattr(importlib.import_module(home), attr)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


class _AliasLoader(importlib.abc.Loader):
    """Loads an old module path as the module at its new one (the same object)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec: restore it

    def get_code(self, fullname: str) -> Any:
        """The new module's code, for ``python -m <old path>`` (runpy)."""
        spec = importlib.util.find_spec(self.target)
        assert spec is not None and spec.loader is not None
        return spec.loader.get_code(self.target)  # type: ignore[attr-defined]


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED_MODULES`."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install_module_aliases() -> None:
    """Make every old path of :data:`MOVED_MODULES` importable (idempotent)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
