"""Projections ``UᵀHU`` of a symmetric operator: a dense U (:func:`projected`) and the
group-structured U of the pooled coadaptation maps (:func:`group_sums`, U never formed).

``projected(H, U) = ½ (UᵀHU + (UᵀHU)ᵀ)`` for U of shape P × B, one block product.
``group_sums(H, θ, group, count)[a, b] = Σ_{i∈a, j∈b} θ_i H_ij θ_j``, that is UᵀHU for
``U[i, group(i)] = θ_i``: column blocks of U built from the indices, their products, and an
index-add over the group ids, within a memory budget checked up front.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from td_analysis.utils.progress import progress_bar as tqdm

from ..memory import HessianMemoryError, available_memory_bytes
from .base import SymmetricOperator

__all__ = [
    "MAX_PROJECTION_COLUMNS",
    "PROJECTION_BYTES",
    "PROJECTION_COPIES",
    "group_sums",
    "projected",
    "projection_bytes",
]

#: Work-space budget (bytes) of the P × k column blocks of :func:`group_sums`.
PROJECTION_BYTES = 768 * 2**20
#: P × k arrays alive at once in one block (V, H V, the product's own work arrays).
PROJECTION_COPIES = 5
#: Most columns (groups) pushed through one batched Hessian-vector product.
MAX_PROJECTION_COLUMNS = 16


def projected(operator: SymmetricOperator | Callable[[Tensor], Tensor], U: Tensor) -> Tensor:
    """``½ (UᵀHU + (UᵀHU)ᵀ)`` (B × B) for U of shape P × B: one block product ``H @ U``."""
    shape = getattr(operator, "shape", None)
    if not isinstance(U, Tensor) or U.ndim != 2 or (shape is not None and U.shape[0] != shape[0]):
        got = tuple(U.shape) if isinstance(U, Tensor) else type(U).__name__
        P = tuple(shape)[0] if shape is not None else "P"
        raise ValueError(f"U must have shape ({P}, B), got {got}")
    R = U.mT @ _matmat(operator)(U).to(U.dtype)
    return (R + R.mT) * 0.5


def _matmat(operator: SymmetricOperator | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if hasattr(operator, "__matmul__"):
        return lambda V: operator @ V
    if callable(operator):
        return operator
    raise TypeError(f"operator must support `op @ V` or be callable, got {type(operator).__name__}")


def projection_bytes(num_params: int, count: int, columns: int, itemsize: int) -> int:
    """Peak work space of :func:`group_sums`: the index vectors, the count × count result and
    :data:`PROJECTION_COPIES` P × columns arrays (V, H V and the product's own work arrays)."""
    fixed = num_params * (2 * 8 + 2 * itemsize) + 2 * count * count * itemsize
    return fixed + PROJECTION_COPIES * num_params * columns * itemsize


def _projection_columns(
    num_params: int,
    count: int,
    itemsize: int,
    device: torch.device,
    columns: int | None,
    memory_limit: int | None,
) -> int:
    """Columns per block: as many as fit in the budget (≤ ``MAX_PROJECTION_COLUMNS``), or raise
    :class:`HessianMemoryError` when not even one column fits."""
    limits = [b for b in (available_memory_bytes(device), memory_limit) if b is not None]
    budget = min(limits) if limits else None
    need_one = projection_bytes(num_params, count, 1, itemsize)
    if budget is not None and need_one > budget:
        raise HessianMemoryError(
            f"the pooled projection of P = {num_params:,} parameters into {count:,} groups needs "
            f"at least {need_one / 1e9:.2f} GB ({count:,}² sums plus P-length work columns), "
            f"but only {budget / 1e9:.2f} GB are available; use fewer bins or fewer parameters"
        )
    if columns is not None:
        if columns < 1:
            raise ValueError(f"columns must be ≥ 1, got {columns}")
        return min(columns, count)
    work = PROJECTION_BYTES if budget is None else min(PROJECTION_BYTES, budget)
    fixed = projection_bytes(num_params, count, 0, itemsize)
    fit = (work - fixed) // (PROJECTION_COPIES * num_params * itemsize)
    return int(max(1, min(count, MAX_PROJECTION_COLUMNS, fit)))


def group_sums(
    operator: SymmetricOperator | Callable[[Tensor], Tensor],
    theta: Tensor,
    group: Tensor,
    count: int,
    *,
    columns: int | None = None,
    memory_limit: int | None = None,
    progress: bool = False,
) -> Tensor:
    """``S = UᵀHU`` (count × count, symmetric) for ``U[i, group[i]] = θ_i``, U never formed.

    ``S_ab = Σ_{i∈a, j∈b} θ_i H_ij θ_j``; ``group[i] = −1`` leaves parameter i out.  Column blocks
    of ``columns`` groups: V = the block's columns of U (built from the indices), H V by
    ``operator`` (``op @ V`` or ``op(V)``), then ``S[a, block] = Σ_{i∈a} θ_i (HV)_i`` by an
    index-add over the group ids.  Memory is checked up front (:func:`projection_bytes`):
    ``memory_limit`` (bytes) caps the budget below the free memory.
    """
    theta = theta.detach().reshape(-1)
    P = theta.numel()
    group = torch.as_tensor(group).reshape(-1).long().to(theta.device)
    if group.numel() != P:
        raise ValueError(f"group has {group.numel()} entries, theta has {P}")
    if count < 1:
        raise ValueError(f"count must be ≥ 1, got {count}")
    if group.numel() and (int(group.min()) < -1 or int(group.max()) >= count):
        raise ValueError(
            f"group ids must lie in [-1, {count}), got [{int(group.min())}, {int(group.max())}]"
        )
    shape = getattr(operator, "shape", None)
    if shape is not None and tuple(shape)[0] != P:
        raise ValueError(f"the operator acts on {tuple(shape)[0]} parameters, theta has {P}")
    matmat = _matmat(operator)
    dtype = getattr(operator, "dtype", None) or theta.dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = theta.dtype
    itemsize = torch.empty((), dtype=dtype).element_size()
    k = _projection_columns(P, count, itemsize, theta.device, columns, memory_limit)
    theta = theta.to(dtype)
    row = torch.where(group >= 0, group, count)  # row `count` collects the left-out parameters
    S = torch.zeros(count + 1, count, dtype=dtype, device=theta.device)
    starts = range(0, count, k)
    for b0 in tqdm(starts, desc="pooled HVPs", disable=not progress, leave=False):
        b1 = min(count, b0 + k)
        sel = ((group >= b0) & (group < b1)).nonzero().squeeze(1)
        V = torch.zeros(P, b1 - b0, dtype=dtype, device=theta.device)
        V[sel, group[sel] - b0] = theta[sel]
        HV = matmat(V)
        del V
        HV = HV.to(dtype).mul_(theta[:, None])
        S[:, b0:b1].index_add_(0, row, HV)
        del HV
    return _symmetrise_(S[:count])


def _symmetrise_(S: Tensor, block: int = 256) -> Tensor:
    """``S ← (S + Sᵀ)/2`` in place, by pairs of blocks (work space 2·block², never a copy of S:
    a 20,000² float64 matrix is 3.2 GB). Entry by entry the same arithmetic as ``(S + S.mT) *
    0.5``, so the result is bit for bit that one."""
    n = S.shape[0]
    for a in range(0, n, block):
        for b in range(a, n, block):
            upper = S[a : a + block, b : b + block]
            lower = S[b : b + block, a : a + block]
            mean = (upper + lower.mT) * 0.5
            upper.copy_(mean)
            lower.copy_(mean.mT)
    return S
