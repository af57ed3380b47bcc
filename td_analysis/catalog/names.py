"""Names and defaults the command line offers before torch is imported.

``td-analysis --help`` and every argument error answer in well under a second because the
parser is built from this module, :mod:`td_analysis.utils.cliargs` and
:mod:`td_analysis.training.tasks`
(plain data) only; torch, scipy and matplotlib are imported by the command that runs. The
modules that implement these names import them from here (one definition each);
``tests/test_cli_startup.py`` checks the ones whose home module keeps its own copy.
"""

from __future__ import annotations

from pathlib import Path

# REGULARISERS (td_analysis.nn.dropout's) and DATASET_NAMES (the keys of td_analysis.data.DATASETS)
# come from their torch-free homes: one definition each
from td_analysis.catalog.datasets import DATASET_NAMES
from td_analysis.catalog.regularisers import REGULARISERS

__all__ = [
    "REGULARISERS",
    "DATASET_NAMES",
    "WHICH",
    "TRACE_METHODS",
    "EXPERIMENTS",
    "RESNET_PRESETS",
    "PRUNING_SPLITS",
    "QUICK_DIR",
    "QUICK_OUT",
    "QUICK_RUNS",
]

#: :data:`td_analysis.curvature.spectrum.WHICH` and ``TRACE_METHODS``
WHICH = ("largest", "smallest", "magnitude")
TRACE_METHODS = ("hutch++", "hutchinson", "exact")
#: ``reproduce --experiment``
EXPERIMENTS = ("toy", "fashion-mlp", "resnet-cifar10", "all")
#: ``reproduce --experiment resnet-cifar10 --preset`` (the presets of task resnet-cifar10)
RESNET_PRESETS = ("cpu", "paper")
#: ``--pruning-split``: where the ResNet pruning tables evaluate (``ResNetSettings.pruning_split``)
PRUNING_SPLITS = ("holdout", "test-exact", "test")
#: everything ``reproduce --quick`` writes (figures, checkpoints) stays under this folder
QUICK_DIR = Path("runs") / "quick"
QUICK_OUT = QUICK_DIR / "figures"
QUICK_RUNS = QUICK_DIR / "checkpoints"
