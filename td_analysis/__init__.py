"""td_analysis: make the targeted-dropout paper measurable.

The folders are the architecture; data flows one way, each layer importing only those below
it (an ``import-linter`` contract in ``pyproject.toml``):

=============  ==============================================================================
``cli``        the ``td-analysis`` command: parses options, calls the pipelines
``explore``    the interactive explorer (notebook 03 as a Voilà page)
``pipelines``  one module per experiment (``toy``, ``fashion_mlp``, ``resnet``) and study
``report``     report text, tables and figures from the JSON results
``analysis``   pruning, Taylor estimates, coadaptation, spectra, statistics over seeds
``training``   configs, tasks, the training loops, checkpoints and the executors of grids
``nn``         targeted dropout and its controls for any model, BatchNorm recalibration
``curvature``  the Hessian operator, its backends and algorithms; ``data``: the data sets
``nets``       the networks (dense toy/MLP, pre-activation ResNet)
``catalog``    plain-data names (data sets, regularisers, experiments) read before torch
``utils``      files, progress, kernels, caches
=============  ==============================================================================

Importing the package changes nothing outside it (no environment variable is set). Runs pin
torch's and MKL's CPU kernels where they start: the ``td-analysis`` command and the
``python -m td_analysis.…`` entry points do it before torch is imported; a notebook or script
calls :func:`pin_cpu_kernels` first (before ``import torch``) for the same bits
(:mod:`td_analysis.utils.reproducibility` explains).
"""

from td_analysis.utils.moved import install_module_aliases
from td_analysis.utils.reproducibility import pin_cpu_kernels

install_module_aliases()  # the flat module paths of the first layout stay importable

__version__ = "0.1.0"
__all__ = ["pin_cpu_kernels"]
