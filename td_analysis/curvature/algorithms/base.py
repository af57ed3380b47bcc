"""What the spectral algorithms share: the :class:`SymmetricOperator` protocol and the
plumbing that applies any such operator to blocks in float64 (sizes, devices, dtypes, seeded
probe blocks, Gram–Schmidt extension, Ritz selection).

An *operator* is anything with ``.shape == (P, P)`` whose ``op @ V`` accepts a ``(P,)`` vector or
a ``(P, k)`` block and returns the product of a symmetric matrix with it: a
:class:`td_analysis.curvature.HessianOperator`, a plain symmetric ``torch.Tensor``, or
:func:`td_analysis.curvature.algorithms.subsets.restrict` of either.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "SymmetricOperator",
    "WHICH",
    "MAX_BLOCK",
    "operator_size",
    "operator_device",
    "operator_dtype",
    "apply_block",
    "basis_dtype",
    "rank_tol",
    "cpu_generator",
    "gaussian_block",
    "rademacher_block",
    "column_blocks",
    "apply_in_blocks",
    "dense_matrix",
    "orthonormal_extension",
    "select_ritz",
    "check_which",
    "fix_signs",
]

WHICH = ("largest", "smallest", "magnitude")
#: Columns per operator product when an algorithm needs many (basis blocks, trace probes).
MAX_BLOCK = 64


@runtime_checkable
class SymmetricOperator(Protocol):
    """What the algorithms need: a square ``shape`` and ``@`` on ``(P,)`` and ``(P, k)``."""

    shape: Any

    def __matmul__(self, other: Tensor) -> Tensor: ...


def operator_size(op: Any) -> int:
    """P of a square operator; a clear ValueError for anything else."""
    shape = getattr(op, "shape", None)
    if shape is None or not hasattr(op, "__matmul__"):
        raise ValueError(
            f"expected an operator with .shape == (P, P) and '@', got {type(op).__name__}"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"the operator must be square (P, P), got shape {shape}")
    if shape[0] < 1:
        raise ValueError("the operator is empty (P = 0)")
    return shape[0]


def operator_device(op: Any) -> torch.device:
    device = getattr(op, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def operator_dtype(op: Any) -> torch.dtype:
    dtype = getattr(op, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float64


def apply_block(op: Any, V: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """op @ V for a block V (P × k), in the operator's dtype, returned in ``dtype``."""
    out = op @ V.to(operator_dtype(op))
    if out.shape != V.shape:
        raise ValueError(
            f"the operator returned shape {tuple(out.shape)} for a block of {tuple(V.shape)}"
        )
    return out.to(device=V.device, dtype=dtype)


def basis_dtype(op: Any) -> torch.dtype:
    """Precision of the Lanczos basis: float32 for an operator of float32 (or lower) precision,
    whose products carry only that many digits anyway; float64 otherwise."""
    dtype = operator_dtype(op)
    low = dtype.is_floating_point and torch.finfo(dtype).bits <= 32
    return torch.float32 if low else torch.float64


def rank_tol(dtype: torch.dtype, float64_tol: float) -> float:
    """Relative size below which a direction counts as dependent: ``float64_tol`` in float64,
    the same multiple of √ε (at least 10 ε) in a lower precision."""
    if dtype == torch.float64:
        return float64_tol
    eps = torch.finfo(dtype).eps
    return max(10 * eps, float64_tol * math.sqrt(eps / torch.finfo(torch.float64).eps))


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (probes drawn on the CPU: the same on any device)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def gaussian_block(P: int, k: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """A P × k block of standard normal float64 entries, moved to ``device``."""
    return torch.randn(P, k, generator=gen, dtype=torch.float64).to(device)


def rademacher_block(P: int, k: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """A P × k block of ±1 float64 entries (Rademacher probes: E[zzᵀ] = I), moved to ``device``."""
    z = torch.randint(0, 2, (P, k), generator=gen).to(torch.float64).mul_(2).sub_(1)
    return z.to(device)


def column_blocks(n: int, block: int):
    """``(start, stop)`` of consecutive column groups of at most ``block`` out of ``n``."""
    for start in range(0, n, block):
        yield start, min(n, start + block)


def apply_in_blocks(op: Any, V: Tensor, block: int = MAX_BLOCK) -> Tensor:
    """op @ V in groups of at most ``block`` columns (bounded work space for wide V)."""
    if V.shape[1] <= block:
        return apply_block(op, V)
    return torch.cat([apply_block(op, V[:, a:b]) for a, b in column_blocks(V.shape[1], block)], 1)


def dense_matrix(op: Any, P: int, device: torch.device) -> Tensor:
    """The P × P matrix of ``op`` from products with blocks of basis vectors, symmetrised."""
    M = torch.empty(P, P, dtype=torch.float64, device=device)
    for a, b in column_blocks(P, MAX_BLOCK):
        E = torch.zeros(P, b - a, dtype=torch.float64, device=device)
        E[torch.arange(a, b), torch.arange(b - a)] = 1.0
        M[:, a:b] = apply_block(op, E)
    return (M + M.mT) * 0.5


def orthonormal_extension(
    Q: Tensor, X: Tensor, gen: torch.Generator, *, want: int | None = None
) -> Tensor:
    """An orthonormal basis of span(X) ⊥ span(Q) (classical Gram–Schmidt twice, then an SVD
    that drops directions already in span(Q)); refilled with random directions up to ``want``
    columns when X is (nearly) inside span(Q) (Krylov breakdown, low-rank operators)."""
    P = X.shape[0]
    want = X.shape[1] if want is None else want
    want = min(want, P - Q.shape[1])
    out = X.new_zeros(P, 0)
    for _ in range(4):
        if want <= 0 or out.shape[1] >= want:
            break
        ref = X.norm(dim=0).max().clamp_min(torch.finfo(X.dtype).tiny)
        basis = torch.cat([Q, out], 1)
        for _ in range(2):
            X = X - basis @ (basis.mT @ X)
        U, s, _ = torch.linalg.svd(X, full_matrices=False)
        keep = s > rank_tol(X.dtype, 1e-10) * ref
        U = U[:, keep][:, : want - out.shape[1]]
        U = U - basis @ (basis.mT @ U)  # one more pass against rounding
        U, _ = torch.linalg.qr(U)
        out = torch.cat([out, U], 1)
        X = gaussian_block(P, want - out.shape[1], gen, X.device).to(X.dtype)
    return out


def select_ritz(theta: Tensor, which: str, count: int) -> Tensor:
    """Indices of ``count`` Ritz values in the order ``which`` names."""
    if which == "largest":
        order = torch.argsort(theta, descending=True)
    elif which == "smallest":
        order = torch.argsort(theta)
    else:
        order = torch.argsort(theta.abs(), descending=True)
    return order[:count]


def check_which(which: str) -> None:
    """A ValueError naming the choices when ``which`` is not one of :data:`WHICH`."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")


def fix_signs(V: Tensor) -> Tensor:
    """Eigenvectors with their largest-|entry| component positive (a reproducible sign)."""
    idx = V.abs().argmax(dim=0)
    signs = torch.sign(V[idx, torch.arange(V.shape[1], device=V.device)])
    signs[signs == 0] = 1.0
    return V * signs
