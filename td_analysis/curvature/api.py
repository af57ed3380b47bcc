"""Public curvature functions: loss, gradient, H·v, full Hessian, its diagonal, Uᵀ H U.

All act on ℓ(θ) = c Σₙ CE(f_θ(xₙ), yₙ), c = 1/N ("mean") or 1 ("sum"), as a function of the flat
vector θ of the selected parameters (``named_parameters()`` order, each tensor row-major; see
:mod:`td_analysis.models`).  Unselected parameters are held fixed.  ``dtype`` analyses the model
in another precision (e.g. float64 for a float32 model) on cast copies; the model and the inputs
are never modified.  Work happens on the inputs' device, in chunks of examples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from . import _engine, dense
from ._engine import Params, Problem, basis_block_size, basis_columns, check_reduction, prepare
from ._memory import check_hessian_memory, empty_matrix

__all__ = [
    "loss",
    "gradient",
    "hvp",
    "hessian",
    "hessian_diagonal",
    "projected_hessian",
    "dense_applicable",
]

_HESSIAN_METHODS = ("auto", "dense", "autograd")
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
    """Flat ∇_θ ℓ over the selected parameters, summed over chunks of ``chunk_size`` examples."""
    problem = prepare(model, inputs, targets, params=params, reduction=reduction, dtype=dtype)
    return _engine.gradient(problem, chunk_size)


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
    for DenseNet-like ReLU nets (R-operator; all k columns in a few large GEMMs).  ``"auto"``:
    dense where it applies.  Accumulated over chunks of ``chunk_size`` examples.
    """
    problem = prepare(model, inputs, targets, params=params, reduction=reduction, dtype=dtype)
    if vectors.ndim not in (1, 2) or vectors.shape[0] != problem.num_params:
        raise ValueError(
            f"vectors must have shape ({problem.num_params},) or ({problem.num_params}, k), "
            f"got {tuple(vectors.shape)}"
        )
    evaluator = _resolve(problem, method, _HESSIAN_METHODS)
    V = vectors.detach().to(device=problem.device, dtype=problem.dtype)
    single = V.ndim == 1
    out = _products(problem, evaluator, V[:, None] if single else V, chunk_size)
    return out[:, 0] if single else out


def _products(
    problem: Problem, evaluator: dense._Dense | None, V: Tensor, chunk_size: int | None
) -> Tensor:
    """H V (P × k) by the closed-form R-operator if ``evaluator`` is given, else torch.func."""
    V = V.contiguous()
    if evaluator is not None:
        return evaluator.hvp(V, chunk_size)
    return _engine.hvp_matrix(problem, V, chunk_size)


def dense_applicable(
    model: nn.Module,
    inputs: Tensor | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> bool:
    """Whether the closed form applies: a DenseNet-like Linear → ReLU → … → Linear classifier.

    With ``inputs`` the forward pass is also verified numerically on a few examples.
    """
    if isinstance(dense.dense_layers(model), str):
        return False
    if inputs is None:
        return True
    targets = torch.zeros(inputs.shape[0], dtype=torch.long, device=inputs.device)
    problem = prepare(model, inputs, targets, dtype=dtype)
    return not isinstance(dense.dense_support(problem), str)


def _resolve(problem: Problem, method: str, allowed: tuple[str, ...]) -> dense._Dense | None:
    """The closed-form evaluator if ``method`` selects it (``None`` means autograd)."""
    if method not in allowed:
        raise ValueError(f"method must be one of {allowed}, got {method!r}")
    if method in ("autograd", "hutchinson"):
        return None
    support = dense.dense_support(problem)
    if isinstance(support, str):
        if method == "dense":
            raise ValueError(
                f"method='dense' needs a DenseNet-like model (nn.ModuleList `layers` of nn.Linear "
                f"with ReLU between, cross-entropy on the logits): {support}. "
                "Use method='autograd' (or 'auto')."
            )
        return None
    return support


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
    """Full P × P Hessian H = ∇²_θ ℓ over the selected parameters (symmetric).

    ``method="dense"``: closed form for DenseNet-like ReLU nets (Gauss–Newton Σₙ Jₙᵀ Aₙ Jₙ plus
    the between-layer residual Σₙ Σ_k g_{n,k} ∇²f_k), one GEMM per row unit written into the upper
    triangle, then mirrored.  ``"autograd"``: batched forward-over-reverse HVPs against chunks
    of basis vectors (any model).  ``"auto"``: dense where it applies, else autograd.
    Refuses (:class:`HessianMemoryError`) when P² entries do not fit in free memory; ``out`` may
    be a preallocated contiguous P × P tensor of the analysis dtype.
    """
    problem = prepare(model, inputs, targets, params=params, reduction=reduction, dtype=dtype)
    evaluator = _resolve(problem, method, _HESSIAN_METHODS)
    P = problem.num_params
    if out is None:
        if evaluator is not None:
            work = dense.workspace_bytes(evaluator, chunk_size)
        else:
            work = 6 * P * basis_block_size(P, problem.itemsize) * problem.itemsize
        check_hessian_memory(P, problem.dtype, problem.device, workspace_bytes=work)
        H = empty_matrix(P, P, problem.dtype, problem.device)
    else:
        if out.shape != (P, P) or out.dtype != problem.dtype or out.device != problem.device:
            raise ValueError(
                f"out must be a ({P}, {P}) {problem.dtype} tensor on {problem.device}, got "
                f"{tuple(out.shape)} {out.dtype} on {out.device}"
            )
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
        H = out
    if evaluator is not None:
        return evaluator.hessian_into(H, chunk_size, progress)
    return _autograd_hessian_into(problem, H, chunk_size, progress)


def _autograd_hessian_into(
    problem: Problem, H: Tensor, chunk_size: int | None, progress: bool
) -> Tensor:
    """Rows j₀…j₁ of H = (H E)ᵀ for basis blocks E = [e_{j₀} … e_{j₁−1}]; then (H + Hᵀ)/2."""
    P = problem.num_params
    block = basis_block_size(P, problem.itemsize)
    starts = range(0, P, block)
    for start in tqdm(starts, disable=not progress, desc="Hessian (autograd)"):
        stop = min(P, start + block)
        HE = _engine.hvp_matrix(problem, basis_columns(problem, start, stop), chunk_size)
        H[start:stop].copy_(HE.mT)
    with torch.no_grad():
        dense.symmetrize_average(H)
    return H


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
    problem = prepare(model, inputs, targets, params=params, reduction=reduction, dtype=dtype)
    evaluator = _resolve(problem, method, _DIAGONAL_METHODS)
    if evaluator is not None:
        return evaluator.diagonal(chunk_size)
    if method == "hutchinson":
        products = dense.dense_support(problem)
        products = None if isinstance(products, str) else products
        return _hutchinson_diagonal(problem, products, num_samples, seed, chunk_size)
    P = problem.num_params
    diag = torch.empty_like(problem.theta)
    block = basis_block_size(P, problem.itemsize)
    for start in range(0, P, block):
        stop = min(P, start + block)
        HE = _engine.hvp_matrix(problem, basis_columns(problem, start, stop), chunk_size)
        diag[start:stop] = HE[start:stop].diagonal()
    return diag


def _hutchinson_diagonal(
    problem: Problem,
    evaluator: dense._Dense | None,
    num_samples: int,
    seed: int,
    chunk_size: int | None,
) -> Tensor:
    """diag H ≈ (1/S) Σ_j v_j ⊙ H v_j with v_j ∈ {±1}^P i.i.d. (drawn on the CPU: reproducible)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    P = problem.num_params
    batch = max(1, min(num_samples, 64))
    total = torch.zeros_like(problem.theta)
    done = 0
    while done < num_samples:
        k = min(batch, num_samples - done)
        V = torch.randint(0, 2, (P, k), generator=gen).to(problem.dtype).mul_(2).sub_(1)
        V = V.to(problem.device)
        total += (V * _products(problem, evaluator, V, chunk_size)).sum(dim=1)
        done += k
    return total / num_samples


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
    """Uᵀ H U (B × B, symmetric) for a P × B matrix U, through B Hessian-vector products.

    With U the magnitude-ordered bin indicators scaled by θ this gives the block sums of the
    coadaptation matrix θᵢ Hᵢⱼ θⱼ without forming H.  ``method`` as in :func:`hvp`.
    """
    problem = prepare(model, inputs, targets, params=params, reduction=reduction, dtype=dtype)
    if U.ndim != 2 or U.shape[0] != problem.num_params:
        raise ValueError(f"U must have shape ({problem.num_params}, B), got {tuple(U.shape)}")
    evaluator = _resolve(problem, method, _HESSIAN_METHODS)
    U = U.detach().to(device=problem.device, dtype=problem.dtype)
    R = U.mT @ _products(problem, evaluator, U, chunk_size)
    return (R + R.mT) * 0.5
