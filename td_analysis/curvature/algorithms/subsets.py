"""The operator H_SS of a parameter subset S (e.g. the weights a pruning mask removes) and the
curvature bound it gives: dᵀHd ≤ λ_max(H_SS)·‖d‖² for any d supported on S."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from td_analysis.curvature.algorithms.base import (
    apply_block,
    operator_device,
    operator_dtype,
    operator_size,
)
from td_analysis.curvature.algorithms.eigen import top_eigenpairs

__all__ = [
    "restrict",
    "RestrictedOperator",
    "PrunedSpectrum",
    "pruned_spectrum",
]


class RestrictedOperator:
    """H_SS: the operator restricted to the index set S (rows and columns).

    H_SS V = (H E V)[S], E the embedding of ℝ^|S| into ℝ^P by zero-padding.
    """

    def __init__(self, op: Any, indices: Tensor) -> None:
        P = operator_size(op)
        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            if idx.shape != (P,):
                raise ValueError(f"a boolean mask must have shape ({P},), got {tuple(idx.shape)}")
            idx = torch.nonzero(idx).flatten()
        idx = idx.to(torch.long).flatten()
        if idx.numel() == 0:
            raise ValueError("the index set is empty")
        if int(idx.min()) < 0 or int(idx.max()) >= P:
            raise ValueError(
                f"indices must lie in [0, {P}), got [{int(idx.min())}, {int(idx.max())}]"
            )
        if torch.unique(idx).numel() != idx.numel():
            raise ValueError("indices must not repeat")
        self.op = op
        self.full_size = P
        self.indices = idx.to(operator_device(op))
        self.shape = (idx.numel(), idx.numel())
        self.dtype = operator_dtype(op)
        self.device = operator_device(op)

    def __matmul__(self, V: Tensor) -> Tensor:
        single = V.ndim == 1
        V2 = V[:, None] if single else V
        if V2.ndim != 2 or V2.shape[0] != self.shape[0]:
            raise ValueError(
                f"expected a vector ({self.shape[0]},) or block ({self.shape[0]}, k), got "
                f"{tuple(V.shape)}"
            )
        full = V2.new_zeros(self.full_size, V2.shape[1])
        full[self.indices.to(V2.device)] = V2
        out = (self.op @ full)[self.indices.to(V2.device)]
        return out[:, 0] if single else out

    def diagonal(self) -> Tensor:
        """diag H_SS = (diag H)[S], from the parent's ``diagonal()`` (its errors propagate)."""
        if not callable(getattr(self.op, "diagonal", None)):
            raise ValueError(f"{type(self.op).__name__} has no diagonal()")
        return self.op.diagonal()[self.indices]


def restrict(op: Any, indices: Tensor) -> RestrictedOperator:
    """The operator H_SS for an index tensor or a boolean mask S over the P coordinates."""
    return RestrictedOperator(op, indices)


@dataclass
class PrunedSpectrum:
    """Curvature of the pruned set S (see :func:`pruned_spectrum`)."""

    num_params: int
    num_pruned: int
    lambda_max_pruned: float
    top_eigenvalues: list[float]
    pruned_mass: list[float]
    second_order: float | None = None
    bound: float | None = None

    @property
    def expected_mass(self) -> float:
        """|S|/P: the mass a direction spread evenly over all parameters puts on S."""
        return self.num_pruned / self.num_params

    def as_dict(self) -> dict:
        return {
            "num_params": self.num_params,
            "num_pruned": self.num_pruned,
            "lambda_max_pruned": self.lambda_max_pruned,
            "top_eigenvalues": list(self.top_eigenvalues),
            "pruned_mass": list(self.pruned_mass),
            "expected_mass": self.expected_mass,
            "second_order": self.second_order,
            "bound": self.bound,
        }


def pruned_spectrum(
    op: Any,
    pruned: Tensor,
    *,
    theta: Tensor | None = None,
    k: int = 5,
    tol: float = 1e-6,
    seed: int = 0,
    eigenpairs: tuple[Tensor, Tensor] | None = None,
    lambda_max: float | None = None,
) -> PrunedSpectrum:
    """λ_max(H_SS) of the pruned set S, the bound it gives, and where H's top directions live.

    Deleting the weights S is the step −d with d = θ on S and 0 elsewhere, so the second-order
    change of the loss is ½dᵀHd = ½d_Sᵀ H_SS d_S ≤ ½ λ_max(H_SS) ‖d‖² (Rayleigh quotient).
    ``pruned_mass`` is ‖u_S‖² for each of H's top-k eigenvectors u (largest algebraic λ): how
    much of the sharpest curvature directions lies on the weights pruning removes (|S|/P for a
    direction spread evenly; near 0 when the kept and pruned weights do not interact).
    ``theta`` (flat parameters) adds ``second_order`` = ½dᵀHd and ``bound`` = ½λ_max‖d‖².
    ``eigenpairs`` (H's top-k from :func:`top_eigenpairs`) and ``lambda_max`` (of H_SS) reuse
    results the caller already has.
    """
    P = operator_size(op)
    mask = torch.as_tensor(pruned)
    if mask.dtype != torch.bool:
        m = torch.zeros(P, dtype=torch.bool)
        m[mask.to(torch.long).cpu()] = True
        mask = m
    if mask.shape != (P,):
        raise ValueError(f"the pruned mask must have shape ({P},), got {tuple(mask.shape)}")
    size = int(mask.sum())
    if size == 0:
        raise ValueError("the pruned set is empty")
    sub = restrict(op, mask)
    if lambda_max is not None:
        lam = float(lambda_max)
    elif size == 1:
        lam = float(apply_block(sub, torch.ones(1, 1, dtype=torch.float64, device=sub.device)))
    else:
        lam = float(top_eigenpairs(sub, min(1, size - 1), tol=tol, seed=seed)[0][0])
    if eigenpairs is None:
        eigenpairs = top_eigenpairs(op, min(k, P - 1), tol=tol, seed=seed)
    evals, evecs = eigenpairs
    mass = (evecs[mask.to(evecs.device)] ** 2).sum(0)
    result = PrunedSpectrum(
        num_params=P,
        num_pruned=size,
        lambda_max_pruned=lam,
        top_eigenvalues=evals.cpu().tolist(),
        pruned_mass=mass.cpu().tolist(),
    )
    if theta is not None:
        theta = torch.as_tensor(theta).flatten()
        if theta.shape != (P,):
            raise ValueError(f"theta must have {P} entries, got {theta.numel()}")
        d = torch.where(mask, theta.detach().cpu().to(torch.float64), 0.0).to(operator_device(op))
        result.second_order = 0.5 * float(d @ apply_block(op, d[:, None])[:, 0])
        result.bound = 0.5 * lam * float(d @ d)
    return result
