"""Exact curvature of the cross-entropy loss: the Hessian operator and function-level helpers.

ℓ(θ) = c Σₙ CE(f_θ(xₙ), yₙ) (c = 1/N for ``reduction="mean"``, 1 for ``"sum"``) as a function of
the flat vector θ of the selected parameters (order of :func:`td_analysis.nets.models.param_specs`).

* :class:`HessianOperator`: H = ∇²ℓ built once (validated, cast, backend chosen by the model's
  structure): ``H @ v``, ``H.diagonal()``, ``H.gradient()``, ``H.loss()``, ``H.dense()``,
  ``H.to_scipy()``; ``distributed=True`` sums over the ranks of ``torch.distributed``.
* :func:`hvp`, :func:`hessian`, :func:`hessian_diagonal`, :func:`projected_hessian`,
  :func:`gradient`: one-call wrappers building an operator.
* Algorithms on any :class:`SymmetricOperator` (``.shape`` and ``@``), one per module in
  :mod:`.algorithms`: eigenpairs, trace, density, subsets (re-exported by :mod:`.spectrum`).
* Backends: closed form for dense ReLU nets (:mod:`.dense`, chosen by :mod:`.structure`),
  ``torch.func`` for any classifier (:mod:`.functional`).
"""

from . import distributed
from .api import (
    dense_applicable,
    gradient,
    hessian,
    hessian_diagonal,
    hvp,
    loss,
    projected_hessian,
)
from .hessian_operator import HessianOperator
from .memory import HessianMemoryError, available_memory_bytes, check_hessian_memory
from .spectrum import (
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
from .structure import dense_structure

__all__ = [
    "HessianOperator",
    "SymmetricOperator",
    "loss",
    "gradient",
    "hvp",
    "hessian",
    "hessian_diagonal",
    "projected_hessian",
    "dense_applicable",
    "dense_structure",
    "distributed",
    "HessianMemoryError",
    "available_memory_bytes",
    "check_hessian_memory",
    "top_eigenpairs",
    "hessian_trace",
    "spectral_density",
    "lanczos_quadrature",
    "restrict",
    "RestrictedOperator",
    "pruned_spectrum",
    "PrunedSpectrum",
]
