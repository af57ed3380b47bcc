"""The trace of a symmetric operator: Hutch++, Hutchinson (Rademacher probes) or exact,
with a standard error.  tr H ≈ (1/m) Σ zᵢᵀHzᵢ (Hutchinson); Hutch++ takes the trace of a
low-rank sketch exactly and probes only the rest."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from td_analysis.curvature.algorithms.base import (
    MAX_BLOCK,
    apply_block,
    apply_in_blocks,
    column_blocks,
    cpu_generator,
    operator_device,
    operator_size,
    orthonormal_extension,
    rademacher_block,
)

__all__ = [
    "hessian_trace",
    "TRACE_METHODS",
]

TRACE_METHODS = ("hutch++", "hutchinson", "exact")


def _exact_diagonal(op: Any) -> Tensor | None:
    """``op.diagonal()`` where the operator has an exact one (a HessianOperator of a ReLU net,
    a tensor); ``None`` where it has none or refuses (ValueError: no closed form)."""
    diag = getattr(op, "diagonal", None)
    if not callable(diag):
        return None
    try:
        return diag()
    except (ValueError, NotImplementedError):
        return None


def hessian_trace(
    op: Any,
    *,
    method: str = "hutch++",
    num_matvecs: int = 99,
    seed: int = 0,
    block_size: int = MAX_BLOCK,
) -> tuple[float, float]:
    """tr H and a standard error of the estimate (0 for ``"exact"``).

    * ``"hutchinson"``: tr H ≈ (1/m) Σᵢ zᵢᵀHzᵢ with m = ``num_matvecs`` Rademacher probes
      (E[zzᵀ] = I); standard error = sample std / √m (Var zᵀHz = 2(‖H‖_F² − Σᵢ Hᵢᵢ²)).
    * ``"hutch++"`` (Meyer et al. 2021): with m/3 probes S, Q = orth(HS);
      tr H = tr(QᵀHQ) + tr((I−QQᵀ)H(I−QQᵀ)), the first exact, the second by Hutchinson on the
      remaining m/3 probes; the standard error is that of the Hutchinson part.  Exact when
      rank H ≤ m/3.
    * ``"exact"``: Σᵢ Hᵢᵢ from the operator's ``diagonal()`` when it has one, else from
      products with blocks of basis vectors (P products: small P only).
    """
    P = operator_size(op)
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
    device = operator_device(op)
    if method == "exact":
        diag = _exact_diagonal(op)
        if diag is not None:
            return float(diag.to(torch.float64).sum()), 0.0
        total = 0.0
        for a, b in column_blocks(P, block_size):
            E = torch.zeros(P, b - a, dtype=torch.float64, device=device)
            E[torch.arange(a, b), torch.arange(b - a)] = 1.0
            total += float(apply_block(op, E)[a:b].diagonal().sum())
        return total, 0.0
    gen = cpu_generator(seed)
    if method == "hutchinson":
        if num_matvecs < 2:
            raise ValueError(f"hutchinson needs num_matvecs >= 2, got {num_matvecs}")
        samples = []
        for a, b in column_blocks(num_matvecs, block_size):
            Z = rademacher_block(P, b - a, gen, device)
            samples.append((Z * apply_block(op, Z)).sum(0))
        g = torch.cat(samples)
        return float(g.mean()), float(g.std() / math.sqrt(g.numel()))
    if num_matvecs < 6:
        raise ValueError(f"hutch++ needs num_matvecs >= 6, got {num_matvecs}")
    s = num_matvecs // 3
    g = num_matvecs - 2 * s
    S = rademacher_block(P, s, gen, device)
    Q = orthonormal_extension(S[:, :0], apply_in_blocks(op, S, block_size), gen)
    low = float((Q * apply_in_blocks(op, Q, block_size)).sum()) if Q.shape[1] else 0.0
    Z = rademacher_block(P, g, gen, device)
    Z = Z - Q @ (Q.mT @ Z)
    samples = (Z * apply_in_blocks(op, Z, block_size)).sum(0)
    return low + float(samples.mean()), float(samples.std() / math.sqrt(g))
