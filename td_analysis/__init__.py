"""td_analysis: make the targeted-dropout paper measurable.

Data flows one way: ``data`` → ``models`` → ``dropout``/``training`` → ``pruning`` →
``curvature`` → ``coadaptation``/``taylor`` → ``plotting`` → ``cli``.

Importing the package changes nothing outside it (no environment variable is set). Runs pin
torch's and MKL's CPU kernels where they start: the ``td-analysis`` command and the
``python -m td_analysis.…`` entry points do it before torch is imported; a notebook or script
calls :func:`pin_cpu_kernels` first (before ``import torch``) for the same bits
(:mod:`td_analysis.reproducibility` explains).
"""

from td_analysis.reproducibility import pin_cpu_kernels

__version__ = "0.1.0"
__all__ = ["pin_cpu_kernels"]
