"""Algorithms on any symmetric operator (``.shape == (P, P)`` and ``op @ V``), one per module:

* :mod:`.base`: the :class:`SymmetricOperator` protocol and the block plumbing they share;
* :mod:`.eigen`: :func:`top_eigenpairs` (restarted block Lanczos, Rayleigh–Ritz);
* :mod:`.trace`: :func:`hessian_trace` (Hutch++, Hutchinson, exact);
* :mod:`.density`: :func:`spectral_density`, :func:`lanczos_quadrature` (stochastic Lanczos
  quadrature);
* :mod:`.subsets`: :func:`restrict`, :func:`pruned_spectrum` (H_SS of a parameter subset);
* :mod:`.diagonal`: :func:`columns_diagonal` (exact, from basis blocks), :func:`hutchinson_diagonal`
  (Rademacher probes);
* :mod:`.projection`: :func:`projected` (UᵀHU), :func:`group_sums` (UᵀHU for the group-structured
  U of the pooled coadaptation maps, U never formed).

They are tested on plain matrices with known spectra as well as on Hessian operators.
"""

from .base import MAX_BLOCK, WHICH, SymmetricOperator
from .density import DENSITY_BYTES, lanczos_quadrature, spectral_density
from .diagonal import columns_diagonal, hutchinson_diagonal
from .eigen import DGKS, STAGNATION, top_eigenpairs
from .projection import group_sums, projected
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
    "columns_diagonal",
    "hutchinson_diagonal",
    "projected",
    "group_sums",
    "WHICH",
    "TRACE_METHODS",
    "MAX_BLOCK",
    "STAGNATION",
    "DGKS",
    "DENSITY_BYTES",
]
