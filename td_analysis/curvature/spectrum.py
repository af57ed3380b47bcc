"""Spectral algorithms for any symmetric linear operator: top eigenpairs, trace, spectral density.

An *operator* is anything with ``.shape == (P, P)`` whose ``op @ V`` accepts a ``(P,)`` vector or
a ``(P, k)`` block and returns the product of a symmetric matrix with it: a
:class:`td_analysis.curvature.HessianOperator`, a plain symmetric ``torch.Tensor``, or
:func:`restrict` of either.  The algorithms work in float64 on the operator's device (its
``device`` attribute when it has one), cast blocks to the operator's ``dtype`` for the product,
and spend their products in blocks (for the Hessian a ``(P, 16)`` block costs about 1.7 times one
vector, since it passes over the data once).

* :func:`top_eigenpairs`: restarted block Lanczos with full reorthogonalisation and
  Rayleigh–Ritz, converged when every residual ‖Hv − λv‖ ≤ tol · ‖H‖.
* :func:`hessian_trace`: Hutch++, Hutchinson or exact, with a standard error.
* :func:`spectral_density`: stochastic Lanczos quadrature with Gaussian smoothing.
* :func:`restrict`, :func:`pruned_spectrum`: the operator H_SS of a parameter subset S (e.g. the
  weights a pruning mask removes) and the curvature bound it gives.

The algorithms live one per module in :mod:`td_analysis.curvature.algorithms` (``base``,
``eigen``, ``trace``, ``density``, ``subsets``); this module keeps their old import path.
"""

from td_analysis.curvature.algorithms import (
    DENSITY_BYTES,
    DGKS,
    MAX_BLOCK,
    STAGNATION,
    TRACE_METHODS,
    WHICH,
    PrunedSpectrum,
    RestrictedOperator,
    SymmetricOperator,
    hessian_trace,
    lanczos_quadrature,
    pruned_spectrum,
    restrict,
    spectral_density,
    top_eigenpairs,
)

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
