"""Algorithms on any symmetric operator (``.shape == (P, P)`` and ``op @ V``), one per module:

* :mod:`.base`: the :class:`SymmetricOperator` protocol and the block plumbing they share;
* :mod:`.eigen`: :func:`top_eigenpairs` (restarted block Lanczos, Rayleigh–Ritz);
* :mod:`.trace`: :func:`hessian_trace` (Hutch++, Hutchinson, exact);
* :mod:`.density`: :func:`spectral_density`, :func:`lanczos_quadrature` (stochastic Lanczos
  quadrature);
* :mod:`.subsets`: :func:`restrict`, :func:`pruned_spectrum` (H_SS of a parameter subset).

They are tested on plain matrices with known spectra as well as on Hessian operators.
"""

from .base import MAX_BLOCK, WHICH, SymmetricOperator
from .density import DENSITY_BYTES, lanczos_quadrature, spectral_density
from .eigen import DGKS, STAGNATION, top_eigenpairs
from .subsets import PrunedSpectrum, RestrictedOperator, pruned_spectrum, restrict
from .trace import TRACE_METHODS, hessian_trace

__all__ = [
    "SymmetricOperator",
    "top_eigenpairs",
    "hessian_trace",
    "lanczos_quadrature",
    "spectral_density",
    "restrict",
    "RestrictedOperator",
    "PrunedSpectrum",
    "pruned_spectrum",
    "WHICH",
    "TRACE_METHODS",
    "MAX_BLOCK",
    "STAGNATION",
    "DGKS",
    "DENSITY_BYTES",
]
