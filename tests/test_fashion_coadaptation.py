"""Pooled coadaptation through HVPs, with U never stored (``group_sums``, ``pooled_coadaptation``,
``layer_coadaptation``, ``experiments_fashion.coadaptation_maps``), by value.

References: ``UᵀHU`` with U written out in the test and H from ``torch.func.hessian`` of a float64
deep MLP (``fashion_cases``), block sums by explicit loops over a brute-force |θ| ordering, and
plain symmetric matrices as operators (the algorithm must work for any operator).
"""

from __future__ import annotations

import pytest
import torch
from fashion_cases import (
    F64,
    flat,
    make_mlp,
    names_of,
    ref_hessian,
    ref_order_rank,
    seed_weight_masks,
)

from td_analysis.analysis.coadaptation import (
    group_sums,
    hessian_operator,
    layer_coadaptation,
    magnitude_order,
    pooled_coadaptation,
    projection_bytes,
)
from td_analysis.curvature import HessianMemoryError
from td_analysis.nets.models import DenseNet


class MatrixOperator:
    """A plain symmetric matrix as an operator; records the widths of the blocks it is given."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A, self.shape, self.widths = A, tuple(A.shape), []

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        self.widths.append(V.shape[1])
        return self.A @ V


def dense_U(theta: torch.Tensor, group: list[int], count: int) -> torch.Tensor:
    U = torch.zeros(len(group), count, dtype=F64)
    for i, g in enumerate(group):
        if g >= 0:
            U[i, g] = theta[i]
    return U


@pytest.mark.parametrize("columns", [None, 1, 2, 3, 7])
def test_group_sums_on_a_plain_matrix(columns):
    gen = torch.Generator().manual_seed(1)
    P, count = 23, 7
    B = torch.randn(P, P, generator=gen, dtype=F64)
    A = B + B.T
    theta = torch.randn(P, generator=gen, dtype=F64)
    group = torch.randint(-1, count, (P,), generator=gen)
    op = MatrixOperator(A)
    got = group_sums(op, theta, group, count, columns=columns)
    U = dense_U(theta, group.tolist(), count)
    torch.testing.assert_close(got, U.T @ A @ U, rtol=1e-12, atol=1e-12)
    # every group column pushed through the operator exactly once, in blocks of `columns`
    assert sum(op.widths) == count
    if columns is not None:
        assert max(op.widths) == min(columns, count)


def test_group_sums_columns_follow_the_memory_limit():
    P, count = 1000, 40
    A = torch.eye(P, dtype=F64)
    theta = torch.linspace(-1, 1, P, dtype=F64)
    group = torch.arange(P) % count
    limit = projection_bytes(P, count, 3, 8) + 10  # room for 3 columns, not 4
    op = MatrixOperator(A)
    got = group_sums(op, theta, group, count, memory_limit=limit)
    assert max(op.widths) == 3
    U = dense_U(theta, group.tolist(), count)
    torch.testing.assert_close(got, U.T @ U, rtol=1e-12, atol=1e-12)


def test_group_sums_refuses_before_any_product():
    P, count = 1000, 40
    op = MatrixOperator(torch.eye(P, dtype=F64))
    with pytest.raises(HessianMemoryError, match="pooled projection of P = 1,000 parameters"):
        group_sums(
            op,
            torch.ones(P, dtype=F64),
            torch.zeros(P, dtype=torch.long),
            count,
            memory_limit=projection_bytes(P, count, 1, 8) - 1,
        )
    assert op.widths == []  # nothing computed


def test_group_sums_bad_input():
    op = MatrixOperator(torch.eye(4, dtype=F64))
    theta = torch.ones(4, dtype=F64)
    with pytest.raises(ValueError, match="group ids"):
        group_sums(op, theta, torch.tensor([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match="group has"):
        group_sums(op, theta, torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="operator acts on"):
        group_sums(op, torch.ones(5, dtype=F64), torch.zeros(5, dtype=torch.long), 1)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bins, columns", [(5, None), (7, 2), (11, 3), (1, None)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("factory", [None, "densenet"])
def test_pooled_coadaptation_deep_mlp_block_sums(bias, bins, columns, reduction, factory):
    """All weights of a 3-hidden-layer MLP ordered by |θ|: B × B block sums by explicit loops."""
    model, x, y = make_mlp(3, bias=bias, factory=densenet if factory else None)
    names = names_of(model, weights_only=True)
    H, _, _ = ref_hessian(model, x, y, names, reduction=reduction)
    theta = flat(model, names).double()
    P = theta.numel()
    rank = ref_order_rank(theta)
    ref = torch.zeros(bins, bins, dtype=F64)
    for i in range(P):
        for j in range(P):
            ref[rank[i] * bins // P, rank[j] * bins // P] += theta[i] * H[i, j] * theta[j]
    order = magnitude_order(model, "weights")
    got = pooled_coadaptation(model, x, y, order, bins, reduction=reduction, columns=columns)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("bias", [True, False])
def test_layer_coadaptation_all_and_pruned(bias):
    model, x, y = make_mlp(4, bias=bias, factory=densenet)
    names = names_of(model, weights_only=True)
    H, _, _ = ref_hessian(model, x, y, names)
    theta = flat(model, names).double()
    named = dict(model.named_parameters())
    layer_of = [l for l, n in enumerate(names) for _ in range(named[n].numel())]
    masks = seed_weight_masks(model, 50)
    pruned = torch.cat(
        [
            torch.from_numpy(masks[n]).reshape(-1)
            if n in masks
            else torch.zeros(named[n].numel(), dtype=torch.bool)
            for n in names
        ]
    )
    L = len(names)
    full_ref = torch.zeros(L, L, dtype=F64)
    sub_ref = torch.zeros(L, L, dtype=F64)
    for i in range(theta.numel()):
        for j in range(theta.numel()):
            c = theta[i] * H[i, j] * theta[j]
            full_ref[layer_of[i], layer_of[j]] += c
            if pruned[i] and pruned[j]:
                sub_ref[layer_of[i], layer_of[j]] += c
    order = magnitude_order(model, "weights")
    full, layers = layer_coadaptation(model, x, y, order)
    sub, _ = layer_coadaptation(model, x, y, order, subset=pruned)
    assert layers == [f"layers.{l}" for l in range(L)]
    torch.testing.assert_close(full, full_ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(sub, sub_ref, rtol=1e-9, atol=1e-11)
    # ½ of the pruned×pruned total is the second-order term of deleting the pruned weights
    d = theta * pruned.double()
    assert 0.5 * float(sub.sum()) == pytest.approx(0.5 * float(d @ H @ d), rel=1e-9)
    with pytest.raises(ValueError, match="subset"):
        layer_coadaptation(model, x, y, order, subset=pruned[1:])


def test_coadaptation_maps_of_the_experiment():
    """``coadaptation_maps``: pooled sums, layer sums and pruned-layer sums at k = 50%."""
    from td_analysis.pipelines.fashion_mlp import coadaptation_maps

    model, x, y = make_mlp(5, bias=True, factory=densenet)
    names = names_of(model, weights_only=True)
    H, _, _ = ref_hessian(model, x, y, names)
    theta = flat(model, names).double()
    C = theta[:, None] * H * theta[None, :]
    rank = torch.tensor(ref_order_rank(theta))
    bins = 4
    P = theta.numel()
    onehot = torch.zeros(P, bins, dtype=F64)
    onehot[torch.arange(P), rank * bins // P] = 1.0
    maps = coadaptation_maps(model, x, y, bins, prune_k=50, dtype=F64)
    torch.testing.assert_close(
        torch.tensor(maps["pooled"], dtype=F64), onehot.T @ C @ onehot, rtol=1e-9, atol=1e-11
    )
    named = dict(model.named_parameters())
    sizes = [named[n].numel() for n in names]
    layer = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(sizes))
    lh = torch.zeros(P, len(names), dtype=F64)
    lh[torch.arange(P), layer] = 1.0
    torch.testing.assert_close(
        torch.tensor(maps["layer_sums"], dtype=F64), lh.T @ C @ lh, rtol=1e-9, atol=1e-11
    )
    masks = seed_weight_masks(model, 50)
    keep = torch.cat(
        [
            torch.from_numpy(masks[n]).reshape(-1).double()
            if n in masks
            else torch.zeros(named[n].numel(), dtype=F64)
            for n in names
        ]
    )
    lp = lh * keep[:, None]
    torch.testing.assert_close(
        torch.tensor(maps["pruned_layer_sums"], dtype=F64), lp.T @ C @ lp, rtol=1e-9, atol=1e-11
    )
    assert maps["n_pruned"] == int(keep.sum()) and maps["num_weights"] == P


@pytest.mark.parametrize("factory", [None, "densenet"])
def test_hessian_operator_matches_reference_hvp(factory):
    model, x, y = make_mlp(6, bias=False, factory=densenet if factory else None)
    names = names_of(model)
    H, _, _ = ref_hessian(model, x, y, names)
    op = hessian_operator(model, x, y, names, dtype=F64)
    V = torch.randn(H.shape[0], 3, dtype=F64)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)


def densenet(widths, bias):
    """The package's DenseNet: the closed-form (dense) backend of the Hessian operator."""
    return DenseNet(widths[0], widths[1:-1], widths[-1], bias)
