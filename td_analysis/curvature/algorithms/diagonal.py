"""The diagonal of a symmetric operator from block products, for any operator.

``columns_diagonal``: exact, ``diag H = [(H E)_jj]`` for blocks E of basis vectors e_j
(P products in all: small P only).  ``hutchinson_diagonal``: unbiased,
``diag H ≈ (1/S) Σ_s v_s ⊙ H v_s`` with Rademacher probes v_s ∈ {±1}^P (Bekas et al. 2007).
The dense backend's closed form lives on the operator (:meth:`HessianOperator.diagonal`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from td_analysis.utils.progress import progress_bar as tqdm

from .base import (
    SymmetricOperator,
    apply_block,
    cpu_generator,
    operator_device,
    operator_size,
    rademacher_block,
)

__all__ = ["BASIS_WORK_BYTES", "basis_block_size", "columns_diagonal", "hutchinson_diagonal"]

#: Work-space budget (bytes) of the P × block arrays of one batched product.
BASIS_WORK_BYTES = 256 * 2**20


def basis_block_size(num_params: int, itemsize: int, budget_bytes: int = BASIS_WORK_BYTES) -> int:
    """How many basis vectors e_j to push through one batched product (P × block work arrays)."""
    return max(1, min(num_params, 1024, budget_bytes // max(1, 4 * num_params * itemsize)))


def _dtype(op: SymmetricOperator, dtype: torch.dtype | None) -> torch.dtype:
    own = getattr(op, "dtype", None)
    if dtype is not None:
        return dtype
    return own if isinstance(own, torch.dtype) and own.is_floating_point else torch.float64


def columns_diagonal(
    op: SymmetricOperator, *, dtype: torch.dtype | None = None, progress: bool = False
) -> Tensor:
    """``diag H`` exactly from ``H @ E`` for blocks ``E = [e_start, …, e_stop−1]``."""
    P = operator_size(op)
    device = operator_device(op)
    dtype = _dtype(op, dtype)
    diag = torch.empty(P, dtype=dtype, device=device)
    block = basis_block_size(P, diag.element_size())
    for start in tqdm(range(0, P, block), disable=not progress, desc="diag H"):
        stop = min(P, start + block)
        idx = torch.arange(stop - start, device=device)
        E = torch.zeros(P, stop - start, dtype=dtype, device=device)
        E[start + idx, idx] = 1
        diag[start:stop] = apply_block(op, E, dtype)[start + idx, idx]
    return diag


def hutchinson_diagonal(
    op: SymmetricOperator,
    num_samples: int = 256,
    *,
    seed: int = 0,
    batch: int = 64,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``diag H ≈ (1/S) Σ_s v_s ⊙ H v_s`` (unbiased), S = ``num_samples`` Rademacher probes
    drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (reproducible, the same on
    every rank), ``batch`` at a time (one block product per batch)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    gen = cpu_generator(seed)
    P = operator_size(op)
    device = operator_device(op)
    dtype = _dtype(op, dtype)
    total = torch.zeros(P, dtype=dtype, device=device)
    done = 0
    while done < num_samples:
        k = min(batch, num_samples - done)
        V = rademacher_block(P, k, gen, device).to(dtype)  # ±1: exact in any dtype
        total += (V * apply_block(op, V, dtype)).sum(dim=1)
        done += k
    return total / num_samples
