"""Training: the configuration (``config``: :class:`TrainConfig`), the tasks that build configs
(``tasks``), the dense training loop (``loop``), the any-model loop (``fit``), checkpoints and
reuse (``runs``), the executors of grids of runs (``executors``) and user models
(``usermodels``).

``td_analysis.training`` was the loop's module before the package had folders: its names
(``train``, ``evaluate``, ``load_checkpoint``, …) stay importable from here, loaded on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        from td_analysis.training import loop

        if hasattr(loop, name):
            return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
