"""``curvature.algorithms.diagonal`` and ``.projection`` on plain symmetric matrices (known
diagonals and projections), and the Hessian operator's methods that delegate to them against a
float64 ``torch.func`` Hessian (``zoo.Reference``)."""

from __future__ import annotations

import math

import pytest
import torch
from zoo import Reference, dense_case

from td_analysis.curvature import HessianOperator
from td_analysis.curvature.algorithms import (
    columns_diagonal,
    group_sums,
    hutchinson_diagonal,
    projected,
)

F64 = torch.float64


def _sym(P: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(P, P, generator=g, dtype=F64)
    return A + A.T


@pytest.mark.parametrize("P", [1, 5, 37])
def test_columns_diagonal_is_exact(P: int) -> None:
    A = _sym(P, P)
    torch.testing.assert_close(columns_diagonal(A), A.diagonal(), rtol=0, atol=0)


def test_hutchinson_diagonal_within_its_standard_error() -> None:
    """v ⊙ Av has mean diag A and, per entry j, variance Σ_{k≠j} A_jk² (Rademacher v): the mean
    of S probes lies within 5 standard errors of diag A."""
    A = _sym(12, 3)
    S = 4000
    est = hutchinson_diagonal(A, S, seed=1, batch=512)
    se = ((A**2).sum(1) - A.diagonal() ** 2).sqrt() / math.sqrt(S)
    assert ((est - A.diagonal()).abs() <= 5 * se).all()
    assert torch.equal(est, hutchinson_diagonal(A, S, seed=1, batch=512))  # seeded
    # a diagonal matrix: every probe gives v ⊙ Dv = diag D (up to the rounding of the mean)
    D = torch.diag(A.diagonal())
    torch.testing.assert_close(hutchinson_diagonal(D, 3), A.diagonal(), rtol=4e-16, atol=0)


def test_hutchinson_diagonal_bad_input() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        hutchinson_diagonal(_sym(3, 0), 0)
    with pytest.raises(ValueError, match="batch"):
        hutchinson_diagonal(_sym(3, 0), 4, batch=0)


def test_projected_and_group_sums_are_one_projection() -> None:
    """group_sums(θ, group) = projected(U) for the U with U[i, group(i)] = θ_i."""
    P, count = 20, 4
    A = _sym(P, 5)
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(P, generator=g, dtype=F64)
    group = torch.randint(-1, count, (P,), generator=g)
    U = torch.zeros(P, count, dtype=F64)
    for i in range(P):
        if group[i] >= 0:
            U[i, group[i]] = theta[i]
    torch.testing.assert_close(projected(A, U), U.T @ A @ U)
    torch.testing.assert_close(group_sums(A, theta, group, count, columns=3), U.T @ A @ U)
    with pytest.raises(ValueError, match=r"U must have shape \(20, B\)"):
        projected(A, torch.zeros(3, 2, dtype=F64))


def test_operator_methods_delegate_to_the_algorithms() -> None:
    model, x, y = dense_case()
    H = HessianOperator(model, (x, y))
    H_ref = Reference(model, x, y).hessian()
    torch.testing.assert_close(H.diagonal(method="columns"), H_ref.diagonal())
    U = torch.randn(H.num_params, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(H.projected(U), U.T @ H_ref @ U)
    assert torch.equal(H.hutchinson_diagonal(16, seed=4), hutchinson_diagonal(H, 16, seed=4))
