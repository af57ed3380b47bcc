"""Exact curvature of the cross-entropy loss: gradient, H·v, full Hessian, diagonal, Uᵀ H U.

ℓ(θ) = c Σₙ CE(f_θ(xₙ), yₙ) (c = 1/N for ``reduction="mean"``, 1 for ``"sum"``) as a function of
the flat vector θ of the selected parameters (order of :func:`td_analysis.models.param_specs`).

* :func:`hvp`, :func:`projected_hessian`, :func:`gradient`: any ``nn.Module`` classifier
  (``torch.func`` forward-over-reverse, chunked over examples).
* :func:`hessian`, :func:`hessian_diagonal`: closed form for DenseNet-like ReLU nets
  (``method="dense"``), generic autograd otherwise (``method="auto"`` picks).
"""

from ._memory import HessianMemoryError, available_memory_bytes, check_hessian_memory
from .api import (
    dense_applicable,
    gradient,
    hessian,
    hessian_diagonal,
    hvp,
    loss,
    projected_hessian,
)

__all__ = [
    "loss",
    "gradient",
    "hvp",
    "hessian",
    "hessian_diagonal",
    "projected_hessian",
    "dense_applicable",
    "HessianMemoryError",
    "available_memory_bytes",
    "check_hessian_memory",
]
