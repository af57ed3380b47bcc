"""Function-level curvature API: thin calls on :class:`HessianOperator`.

All act on ℓ(θ) = c Σₙ CE(f_θ(xₙ), yₙ), c = 1/N ("mean") or 1 ("sum"), as a function of the flat
vector θ of the selected parameters (``named_parameters()`` order, each tensor row-major; see
:mod:`td_analysis.nets.models`; ``params=None`` = the trainable ones).  Each call builds one
operator (validation, casting and the choice of backend happen there, once); to apply several
products
to the same model and data, build a :class:`HessianOperator` yourself and reuse it.
``method`` is the operator's ``backend``: ``"auto"`` (closed form where the model's structure
is a dense ReLU net), ``"dense"`` or ``"autograd"``.  The model and the inputs are never modified.
Targets are integer labels in [0, K); label -100 is ignored as by ``F.cross_entropy`` (the mean
divides by the number of the other examples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .hessian_operator import HessianOperator, Params, check_reduction
from .structure import dense_structure

__all__ = [
    "loss",
    "gradient",
    "hvp",
    "hessian",
    "hessian_diagonal",
    "projected_hessian",
    "dense_applicable",
]

_DIAGONAL_METHODS = ("auto", "dense", "autograd", "hutchinson")


def loss(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    reduction: str = "mean",
    dtype: torch.dtype | None = None,
) -> Tensor:
    """ℓ = c Σₙ CE(f(xₙ), yₙ), c = 1/N ("mean") or 1 ("sum"); differentiable in the parameters.

    With ``dtype`` the parameters and inputs are cast (differentiably) before the forward pass.
    (Unlike the operator this runs the model itself, with autograd, for callers that need to
    backpropagate; use ``HessianOperator(...).loss()`` for a validated, chunked value.)
    """
    check_reduction(reduction)
    if dtype is None:
        return F.cross_entropy(model(inputs), targets, reduction=reduction)
    tensors = {
        n: (t.to(dtype) if t.is_floating_point() else t)
        for n, t in [*model.named_parameters(), *model.named_buffers()]
    }
    x = inputs.to(dtype) if inputs.is_floating_point() else inputs
    return F.cross_entropy(functional_call(model, tensors, (x,)), targets, reduction=reduction)


def _operator(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    params: Params,
    reduction: str,
    dtype: torch.dtype | None,
    chunk_size: int | None,
    method: str = "auto",
    progress: bool = False,
    cache: bool = False,
) -> HessianOperator:
    """One operator for one call: no forward cache unless the call makes several passes."""
    return HessianOperator(
        model,
        (inputs, targets),
        params=params,
        reduction=reduction,
        dtype=dtype,
        device=inputs.device if isinstance(inputs, Tensor) else None,
        backend=method,
        chunk_size=chunk_size,
        progress=progress,
        cache_bytes=None if cache else 0,
    )


def gradient(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    params: Params = None,
    reduction: str = "mean",
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Flat ∇_θ ℓ over the selected parameters (:meth:`HessianOperator.gradient`)."""
    op = _operator(model, inputs, targets, params, reduction, dtype, chunk_size, "autograd")
    return op.gradient()


def hvp(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    vectors: Tensor,
    *,
    params: Params = None,
    reduction: str = "mean",
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    method: str = "auto",
) -> Tensor:
    """Exact H v for ``vectors`` of shape P (one) or P × k (many at once), for any classifier.

    ``"autograd"``: forward-over-reverse, H v = d/dε ∇ℓ(θ + εv) (``torch.func.jvp`` of ``grad``,
    ``vmap``'d over the k columns).  ``"dense"``: the same directional derivative written out
    for dense ReLU nets (R-operator; all k columns in a few large GEMMs).  ``"auto"``:
    dense where the model's structure allows it.  ``HessianOperator(...) @ vectors``.
    """
    op = _operator(model, inputs, targets, params, reduction, dtype, chunk_size, method)
    return op @ vectors


def dense_applicable(
    model: nn.Module,
    inputs: Tensor | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> bool:
    """Whether the closed form applies, decided by structure (:func:`structure.dense_structure`).

    ``inputs`` only matter for an ``nn.Sequential`` without ``nn.Flatten`` (they must be 2-D);
    no output is ever compared.  ``dtype`` is accepted for compatibility and ignored.
    """
    found = dense_structure(model)
    if isinstance(found, str):
        return False
    return found.flatten or inputs is None or inputs.ndim == 2


def hessian(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    params: Params = None,
    reduction: str = "mean",
    dtype: torch.dtype | None = None,
    method: str = "auto",
    progress: bool = False,
    out: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Full P × P Hessian H = ∇²_θ ℓ over the selected parameters (:meth:`HessianOperator.dense`).

    ``method="dense"``: closed form for dense ReLU nets (Gauss–Newton Σₙ Jₙᵀ Aₙ Jₙ plus the
    between-layer residual Σₙ Σ_k g_{n,k} ∇²f_k), one GEMM per row unit written into the upper
    triangle, then mirrored.  ``"autograd"``: batched forward-over-reverse HVPs against chunks
    of basis vectors (any model).  ``"auto"``: dense where it applies, else autograd.
    Refuses (:class:`HessianMemoryError`) when P² entries do not fit in free memory; ``out`` may
    be a preallocated contiguous P × P tensor of the analysis dtype.
    """
    op = _operator(model, inputs, targets, params, reduction, dtype, chunk_size, method, progress)
    return op.dense(out=out)


def hessian_diagonal(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    params: Params = None,
    reduction: str = "mean",
    dtype: torch.dtype | None = None,
    method: str = "auto",
    num_samples: int = 256,
    seed: int = 0,
    chunk_size: int | None = None,
) -> Tensor:
    """diag H without forming H.

    ``"dense"``: exact closed form, H[(r,s),(r,s)] = Σₙ Mₙ[r,r] ξ_{n,s}² (Mₙ = δᵀAₙδ, ξ the layer
    input, or 1 for a bias).  ``"autograd"``: exact, from HVPs with blocks of basis vectors (P
    HVPs: small P only).  ``"hutchinson"``: unbiased estimate E[v ⊙ Hv] over ``num_samples``
    Rademacher probes v (seeded by ``seed``; any model).  ``"auto"``: dense, else autograd.
    """
    if method not in _DIAGONAL_METHODS:
        raise ValueError(f"method must be one of {_DIAGONAL_METHODS}, got {method!r}")
    backend = "auto" if method == "hutchinson" else method
    op = _operator(
        model, inputs, targets, params, reduction, dtype, chunk_size, backend, cache=True
    )
    if method == "hutchinson":
        return op.hutchinson_diagonal(num_samples, seed=seed)
    return op.diagonal(method="exact" if op.backend == "dense" else "columns")


def projected_hessian(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    U: Tensor,
    *,
    params: Params = None,
    reduction: str = "mean",
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    method: str = "auto",
) -> Tensor:
    """Uᵀ H U (B × B, symmetric) for a P × B matrix U, in one pass (:meth:`projected`).

    With U the magnitude-ordered bin indicators scaled by θ this gives the block sums of the
    coadaptation matrix θᵢ Hᵢⱼ θⱼ without forming H.  ``method`` as in :func:`hvp`.
    """
    op = _operator(model, inputs, targets, params, reduction, dtype, chunk_size, method)
    return op.projected(U)
