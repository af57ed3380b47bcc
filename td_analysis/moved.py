"""Names a module keeps importable after their code moved elsewhere, imported on first use.

A module lends them through :func:`moved_names` as its ``__getattr__`` (PEP 562): the domain
modules keep the old names of their command-line code (now in :mod:`td_analysis.cli`) without
importing the command line, which imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


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
