"""Tests of ``td_analysis.analysis.coadaptation`` against independent brute-force references.

The reference Hessian is ``torch.func.hessian`` of the cross-entropy written here as a function of
a flat parameter vector (float64), never the package's curvature code; every summary of
``C_ij = θ_i H_ij θ_j`` is checked against explicit Python loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from zoo import Reference, dense_case, selected_names

from td_analysis.analysis.coadaptation import (
    BlockSummary,
    bin_matrix,
    block_summary,
    coadaptation_entries,
    coadaptation_matrix,
    lowest_magnitude_set,
    magnitude_order,
    max_pool,
    ordered_coadaptation,
    pooled_block_summary,
    pooled_coadaptation,
    pooled_unit_dependence,
    pruned_set,
    top_pairs,
    unit_dependence,
    unit_index,
)
from td_analysis.nets.models import DenseNet

F64 = torch.float64


# ----------------------------------------------------------------------------- references
make_case = dense_case  # the shared case (tests/zoo.py)


def all_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def weight_names_ref(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.ndim == 2]


def flat_theta(model, names) -> torch.Tensor:
    named = dict(model.named_parameters())
    return torch.cat([named[n].detach().reshape(-1) for n in names])


def ref_hessian(model, x, y, names, reduction="sum") -> torch.Tensor:
    """Full float64 Hessian of the CE loss w.r.t. ``names`` (flat, row-major), by torch.func."""
    assert list(names) == selected_names(model, names), "the reference keeps the model's order"
    return Reference(model, x, y, params=names, reduction=reduction).hessian()


def ref_positions(model, names):
    """List of (name, index tuple) for every flat position of the selection, row-major."""
    named = dict(model.named_parameters())
    out = []
    for n in names:
        for idx in np.ndindex(*named[n].shape):
            out.append((n, tuple(int(i) for i in idx)))
    return out


def ref_order(theta: torch.Tensor) -> list[int]:
    """Decreasing |θ|, ties by flat index (brute force)."""
    return sorted(range(theta.numel()), key=lambda i: (-abs(float(theta[i])), i))


def ref_bin(position: int, bins: int, p: int) -> int:
    """Position a of the magnitude ordering lies in bin ⌊a·B/P⌋ (consecutive near-equal bins)."""
    return (position * bins) // p


# ----------------------------------------------------------------------------- C itself
@pytest.mark.parametrize("hidden", [(4,), (4, 3)])
def test_coadaptation_matrix_matches_double_loop(hidden):
    model, x, y = make_case(1, hidden=hidden)
    names = all_names(model)
    H = ref_hessian(model, x, y, names)
    theta = flat_theta(model, names)
    C = coadaptation_matrix(theta, H)
    P = theta.numel()
    assert C.shape == (P, P) and C.dtype == F64
    ref = torch.empty(P, P, dtype=F64)
    for i in range(P):
        for j in range(P):
            ref[i, j] = theta[i] * H[i, j] * theta[j]
    torch.testing.assert_close(C, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(C, C.T, rtol=1e-10, atol=1e-12)


def test_coadaptation_matrix_casts_theta_to_hessian_dtype():
    theta = torch.tensor([1.0, -2.0], dtype=torch.float32)
    H = torch.tensor([[1.0, 0.5], [0.5, 3.0]], dtype=F64)
    C = coadaptation_matrix(theta, H)
    assert C.dtype == F64
    torch.testing.assert_close(C, torch.tensor([[1.0, -1.0], [-1.0, 12.0]], dtype=F64))


@pytest.mark.parametrize(
    "theta, H",
    [
        (torch.ones(2, 2), torch.eye(4)),  # theta not a vector
        (torch.ones(3), torch.eye(4)),  # size mismatch
        (torch.ones(3), torch.ones(3, 4)),  # non-square
        (torch.ones(3), torch.ones(3)),  # hessian a vector
    ],
)
def test_coadaptation_matrix_bad_shapes(theta, H):
    with pytest.raises(ValueError):
        coadaptation_matrix(theta, H)


# ----------------------------------------------------------------------------- ordering
@pytest.mark.parametrize("params", ["weights", None, ["layers.1.weight"], ["layers.0.bias"]])
@pytest.mark.parametrize("hidden", [(4,), (4, 3)])
def test_magnitude_order_global(params, hidden):
    model, _, _ = make_case(2, hidden=hidden)
    if params == "weights":
        names = weight_names_ref(model)
    elif params is None:
        names = all_names(model)
    else:
        names = list(params)
    order = magnitude_order(model, params)
    theta = flat_theta(model, names)
    assert order.names == names
    assert order.size == theta.numel()
    torch.testing.assert_close(order.theta, theta, rtol=0, atol=0)
    assert order.order.tolist() == ref_order(theta)
    mags = order.ordered_theta.abs()
    assert bool((mags[:-1] >= mags[1:]).all())
    # rank is the inverse permutation
    rank = order.rank
    for a, i in enumerate(order.order.tolist()):
        assert int(rank[i]) == a
    # locate: name and (unit, input) of every position, checked against the model itself
    positions = ref_positions(model, names)
    named = dict(model.named_parameters())
    for a in range(order.size):
        name, index = order.locate(a)
        assert (name, index) == positions[int(order.order[a])]
        assert float(named[name].detach()[index]) == float(order.ordered_theta[a])


def test_magnitude_order_ties_are_broken_by_flat_index():
    model = DenseNet(3, (2,), 3).to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
        model.layers[0].weight[1, 2] = -0.5  # same magnitude, opposite sign
        model.layers[1].weight[0, 0] = 2.0
    order = magnitude_order(model, "weights")
    expected = ref_order(flat_theta(model, weight_names_ref(model)))
    assert order.order.tolist() == expected
    assert order.locate(0) == ("layers.1.weight", (0, 0))
    assert order.locate(1) == ("layers.0.weight", (0, 0))


@pytest.mark.parametrize("hidden", [(4,), (4, 3)])
def test_magnitude_order_within_layers(hidden):
    model, _, _ = make_case(3, hidden=hidden)
    order = magnitude_order(model, None, within_layers=True)
    names = all_names(model)
    named = dict(model.named_parameters())
    theta = flat_theta(model, names)
    torch.testing.assert_close(order.theta, theta, rtol=0, atol=0)
    expected, offset = [], 0
    for n in names:
        k = named[n].numel()
        expected += [offset + i for i in ref_order(named[n].detach().reshape(-1))]
        offset += k
    assert order.order.tolist() == expected
    positions = ref_positions(model, names)
    start = 0
    for n in names:
        k = named[n].numel()
        block = order.ordered_theta[start : start + k].abs()
        assert bool((block[:-1] >= block[1:]).all())
        for a in range(start, start + k):
            name, index = order.locate(a)
            assert name == n
            assert (name, index) == positions[int(order.order[a])]
            assert float(named[name].detach()[index]) == float(order.ordered_theta[a])
        start += k


def test_locate_first_layer_index_is_unit_then_input():
    model = DenseNet(5, (3,), 3).to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.01)
        model.layers[0].weight[2, 4] = 7.0  # unit 2, input 4
        model.layers[1].weight[1, 0] = -3.0
    order = magnitude_order(model, "weights")
    assert order.locate(0) == ("layers.0.weight", (2, 4))
    assert order.locate(1) == ("layers.1.weight", (1, 0))
    with pytest.raises(IndexError):
        order.locate(order.size)


@pytest.mark.parametrize("params", ["weights", None, ["layers.1.weight"]])
def test_ordered_coadaptation_is_permuted_c(params):
    model, x, y = make_case(4, hidden=(4, 3))
    order = magnitude_order(model, params)
    H = ref_hessian(model, x, y, order.names)
    theta = flat_theta(model, order.names)
    Co = ordered_coadaptation(order, H)
    perm = ref_order(theta)
    P = len(perm)
    ref = torch.empty(P, P, dtype=F64)
    for a in range(P):
        for b in range(P):
            i, j = perm[a], perm[b]
            ref[a, b] = theta[i] * H[i, j] * theta[j]
    torch.testing.assert_close(Co, ref, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- block sums
def brute_blocks(C: torch.Tensor, pruned: list[bool]):
    P = C.shape[0]
    kk = kp = pp = akk = akp = app = 0.0
    for i in range(P):
        for j in range(P):
            c = float(C[i, j])
            if not pruned[i] and not pruned[j]:
                kk, akk = kk + c, akk + abs(c)
            elif pruned[i] and pruned[j]:
                pp, app = pp + c, app + abs(c)
            else:
                kp, akp = kp + c, akp + abs(c)
    total = akk + akp + app
    return kk, kp, pp, akk / total, akp / total, app / total


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("params", ["weights", None])
def test_block_summary_matches_brute_force(fraction, params):
    model, x, y = make_case(5, hidden=(4, 3))
    order = magnitude_order(model, params)
    H = ref_hessian(model, x, y, order.names)
    Co = ordered_coadaptation(order, H)
    theta = flat_theta(model, order.names)
    P = theta.numel()
    k = int(fraction * P)
    perm = ref_order(theta)
    pruned_flat = [False] * P
    for i in perm[P - k :]:
        pruned_flat[i] = True
    pruned_pos = [pruned_flat[i] for i in perm]  # ordered: the last k positions
    assert pruned_pos == [False] * (P - k) + [True] * k

    s = block_summary(Co, torch.tensor(pruned_pos))
    kk, kp, pp, skk, skp, spp = brute_blocks(Co, pruned_pos)
    assert isinstance(s, BlockSummary)
    assert s.n_kept == P - k and s.n_pruned == k
    for got, want in [(s.kept_kept, kk), (s.kept_pruned, kp), (s.pruned_pruned, pp)]:
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    for got, want in [
        (s.abs_share_kept_kept, skk),
        (s.abs_share_kept_pruned, skp),
        (s.abs_share_pruned_pruned, spp),
    ]:
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    assert s.abs_share_kept_kept + s.abs_share_kept_pruned + s.abs_share_pruned_pruned == (
        pytest.approx(1.0, abs=1e-12)
    )
    assert s.total == pytest.approx(float(Co.sum()), rel=1e-10, abs=1e-12)

    # ½ pruned×pruned is ½ dᵀHd for d = θ on the pruned set (flat order, H directly)
    d = theta * torch.tensor(pruned_flat, dtype=F64)
    quad = 0.5 * float(d @ H @ d)
    assert s.second_order_estimate == pytest.approx(quad, rel=1e-10, abs=1e-12)

    # any order: the unordered C with the mask in flat order gives the same sums
    C_flat = coadaptation_matrix(theta, H)
    s2 = block_summary(C_flat, torch.tensor(pruned_flat))
    for f in ("kept_kept", "kept_pruned", "pruned_pruned", "abs_share_pruned_pruned"):
        assert getattr(s2, f) == pytest.approx(getattr(s, f), rel=1e-10, abs=1e-12)

    d_dict = s.as_dict()
    assert d_dict["total"] == pytest.approx(s.total)
    assert d_dict["second_order_estimate"] == pytest.approx(0.5 * pp, rel=1e-10, abs=1e-12)


def test_block_summary_nothing_or_everything_pruned():
    model, x, y = make_case(6)
    order = magnitude_order(model, "weights")
    Co = ordered_coadaptation(order, ref_hessian(model, x, y, order.names))
    P = order.size
    s0 = block_summary(Co, torch.zeros(P, dtype=torch.bool))
    assert s0.pruned_pruned == 0.0 and s0.kept_pruned == 0.0
    assert s0.abs_share_kept_kept == pytest.approx(1.0)
    s1 = block_summary(Co, torch.ones(P, dtype=torch.bool))
    assert s1.kept_kept == 0.0 and s1.n_kept == 0
    assert s1.pruned_pruned == pytest.approx(float(Co.sum()), rel=1e-12)
    zero = block_summary(torch.zeros(3, 3, dtype=F64), torch.tensor([True, False, True]))
    assert zero.abs_share_pruned_pruned == 0.0 and zero.total == 0.0


def test_block_summary_bad_shapes():
    with pytest.raises(ValueError):
        block_summary(torch.zeros(4, 4), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError):
        block_summary(torch.zeros(4, 3), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError):
        block_summary(torch.zeros(4, 4), torch.zeros(4, 1, dtype=torch.bool))


# ----------------------------------------------------------------------------- pruned sets
def brute_weight_rule(w: torch.Tensor, fraction: float) -> list[list[bool]]:
    rows = []
    for row in w.tolist():
        mags = [abs(v) for v in row]
        tau = sorted(mags)[int(fraction * len(row))]
        rows.append([m < tau for m in mags])
    return rows


def brute_unit_rule(w: torch.Tensor, fraction: float) -> list[list[bool]]:
    norms = [math.sqrt(sum(v * v for v in row)) for row in w.tolist()]
    tau = sorted(norms)[int(fraction * len(norms))]
    return [[n < tau] * w.shape[1] for n in norms]


def brute_global_rule(ws: list[torch.Tensor], fraction: float) -> list[list[list[bool]]]:
    mags = sorted(abs(v) for w in ws for v in w.reshape(-1).tolist())
    tau = mags[int(fraction * len(mags))]
    return [[[abs(v) < tau for v in row] for row in w.tolist()] for w in ws]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("kind", ["weight", "unit", "global", "lowest"])
@pytest.mark.parametrize(
    "params", ["weights", None, ["layers.1.weight"], ["layers.1.weight", "layers.2.bias"]]
)
def test_pruned_set_matches_brute_force_rule(fraction, kind, params):
    model, _, _ = make_case(7, hidden=(4, 3))
    order = magnitude_order(model, params)
    names = order.names
    named = {n: p.detach() for n, p in model.named_parameters()}
    got = pruned_set(model, order, fraction, kind)
    assert got.dtype == torch.bool and got.shape == (order.size,)

    if kind == "lowest":
        theta = flat_theta(model, names)
        k = int(fraction * theta.numel())
        smallest = sorted(range(theta.numel()), key=lambda i: abs(float(theta[i])))[:k]
        want = [i in set(smallest) for i in range(theta.numel())]
    else:
        weights = [n for n in names if n.endswith(".weight")]
        if kind == "global":
            masks = dict(
                zip(weights, brute_global_rule([named[n] for n in weights], fraction), strict=True)
            )
        else:
            rule = brute_weight_rule if kind == "weight" else brute_unit_rule
            masks = {n: rule(named[n], fraction) for n in weights}
        want = []
        for n in names:
            if n in masks:
                want += [b for row in masks[n] for b in row]
            else:  # biases and unselected tensors are never pruned
                want += [False] * named[n].numel()
    assert got.tolist() == want


def test_lowest_magnitude_set_bad_fraction():
    model, _, _ = make_case(8)
    order = magnitude_order(model)
    with pytest.raises(ValueError):
        lowest_magnitude_set(order, 1.5)
    with pytest.raises(ValueError):
        lowest_magnitude_set(order, -0.1)
    assert bool(lowest_magnitude_set(order, 1.0).all())


# ----------------------------------------------------------------------------- units
def ref_unit_of(model, names) -> tuple[list[int], list[tuple[str, int]]]:
    """Unit id of every flat parameter: weight W_oi and bias b_o of layer l belong to (l, o)."""
    named = dict(model.named_parameters())
    units: list[tuple[str, int]] = []
    for n in names:
        layer = n.rsplit(".", 1)[0]
        for o in range(named[n].shape[0]):
            if (layer, o) not in units:
                units.append((layer, o))
    ids = []
    for n, index in ref_positions(model, names):
        ids.append(units.index((n.rsplit(".", 1)[0], index[0])))
    return ids, units


@pytest.mark.parametrize("params", [None, "weights", ["layers.0.weight", "layers.0.bias"]])
def test_unit_dependence_matches_brute_force(params):
    model, x, y = make_case(9, hidden=(4, 3))
    order = magnitude_order(model, params)
    H = ref_hessian(model, x, y, order.names)
    theta = flat_theta(model, order.names)
    C_flat = coadaptation_matrix(theta, H)
    ids, units = ref_unit_of(model, order.names)
    got_ids, got_units = unit_index(order)
    assert got_units == units
    assert got_ids.tolist() == ids

    U = len(units)
    ref = torch.zeros(U, U, dtype=F64)
    P = theta.numel()
    for i in range(P):
        for j in range(P):
            ref[ids[i], ids[j]] += C_flat[i, j]
    D_flat = unit_dependence(C_flat, order, ordered=False)
    D_ordered = unit_dependence(ordered_coadaptation(order, H), order, ordered=True)
    torch.testing.assert_close(D_flat, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(D_ordered, ref, rtol=1e-10, atol=1e-12)
    if params is None:
        assert len(units) == 4 + 3 + 3
    for reduction in ("sum", "mean"):
        scale = 1.0 if reduction == "sum" else 1.0 / len(y)
        D_hvp = pooled_unit_dependence(model, x, y, order, reduction=reduction, chunk_size=5)
        torch.testing.assert_close(D_hvp, scale * ref, rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------- pooling
def brute_block_sums(Co: torch.Tensor, bins: int) -> torch.Tensor:
    P = Co.shape[0]
    out = torch.zeros(bins, bins, dtype=F64)
    for a in range(P):
        for b in range(P):
            out[ref_bin(a, bins, P), ref_bin(b, bins, P)] += Co[a, b]
    return out


@pytest.mark.parametrize("bins", [1, 3, 4, 5, 7, 12])
def test_bin_matrix_structure(bins):
    model, _, _ = make_case(10)
    order = magnitude_order(model, "layers.1.weight")  # 4·3 = 12 weights
    P = order.size
    assert P == 12
    U = bin_matrix(order, bins)
    assert U.shape == (P, bins) and U.dtype == F64
    theta = flat_theta(model, ["layers.1.weight"])
    perm = ref_order(theta)
    for a, i in enumerate(perm):
        for b in range(bins):
            want = float(theta[i]) if b == ref_bin(a, bins, P) else 0.0
            assert float(U[i, b]) == want
    sizes = (U != 0).sum(0).tolist()
    assert sum(sizes) == P and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("bins", [0, -1, 13])
def test_bin_matrix_bad_bins(bins):
    model, _, _ = make_case(10)
    order = magnitude_order(model, "layers.1.weight")
    with pytest.raises(ValueError):
        bin_matrix(order, bins)


@pytest.mark.parametrize(
    "hidden, params, bins",
    [
        ((4,), "layers.1.weight", 4),  # P = 12: divides
        ((4,), "layers.1.weight", 5),  # does not divide
        ((4,), "layers.1.weight", 12),  # one parameter per bin: C itself
        ((4,), "weights", 8),  # P = 7·4 + 4·3 = 40
        ((4,), "weights", 7),
        ((4, 3), "weights", 9),  # P = 28 + 12 + 9 = 49
        ((4, 3), None, 6),  # all parameters, biases included
        ((4, 3), ["layers.0.bias", "layers.2.weight"], 5),
    ],
)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pooled_coadaptation_equals_block_sums(hidden, params, bins, reduction):
    model, x, y = make_case(11, hidden=hidden)
    order = magnitude_order(model, params)
    H = ref_hessian(model, x, y, order.names, reduction=reduction)
    Co = ordered_coadaptation(order, H)
    ref = brute_block_sums(Co, bins)
    U = bin_matrix(order, bins)
    torch.testing.assert_close(U.T @ H @ U, ref, rtol=1e-10, atol=1e-12)
    pooled = pooled_coadaptation(model, x, y, order, bins, reduction=reduction)
    assert pooled.shape == (bins, bins)
    torch.testing.assert_close(pooled, ref, rtol=1e-8, atol=1e-10)
    if bins == order.size:
        torch.testing.assert_close(pooled, Co, rtol=1e-8, atol=1e-10)


def test_pooled_coadaptation_bad_bins():
    model, x, y = make_case(11)
    order = magnitude_order(model, "layers.1.weight")
    with pytest.raises(ValueError):
        pooled_coadaptation(model, x, y, order, order.size + 1)


def brute_max_pool(C: torch.Tensor, bins: int) -> torch.Tensor:
    P = C.shape[0]
    best = {}
    for i in range(P):
        for j in range(P):
            key = (ref_bin(i, bins, P), ref_bin(j, bins, P))
            v = float(C[i, j])
            if key not in best or abs(v) > abs(best[key]):
                best[key] = v
    out = torch.empty(bins, bins, dtype=F64)
    for (a, b), v in best.items():
        out[a, b] = v
    return out


@pytest.mark.parametrize("bins", [1, 2, 3, 4, 5, 7, 11, 12])
def test_max_pool_matches_brute_force(bins):
    model, x, y = make_case(12)
    order = magnitude_order(model, "layers.1.weight")
    Co = ordered_coadaptation(order, ref_hessian(model, x, y, order.names))
    torch.testing.assert_close(max_pool(Co, bins), brute_max_pool(Co, bins), rtol=0, atol=0)
    # an asymmetric matrix with both signs: rows and columns must be binned alike
    gen = torch.Generator().manual_seed(bins)
    R = torch.randn(12, 12, generator=gen, dtype=F64)
    torch.testing.assert_close(max_pool(R, bins), brute_max_pool(R, bins), rtol=0, atol=0)
    if bins == 12:
        torch.testing.assert_close(max_pool(R, bins), R, rtol=0, atol=0)


def test_max_pool_keeps_sign_of_largest_magnitude():
    C = torch.tensor([[1.0, -5.0], [4.0, 2.0]], dtype=F64)
    assert float(max_pool(C, 1)[0, 0]) == -5.0
    C = torch.tensor([[1.0, 5.0], [-4.0, 2.0]], dtype=F64)
    assert float(max_pool(C, 1)[0, 0]) == 5.0


@pytest.mark.parametrize("bins", [0, 13])
def test_max_pool_bad_bins(bins):
    with pytest.raises(ValueError):
        max_pool(torch.zeros(12, 12), bins)


@pytest.mark.parametrize("position, k", [(0, 5), (7, 3), (11, 12), (3, 50)])
def test_top_pairs_are_largest_entries_of_row(position, k):
    model, x, y = make_case(13)
    order = magnitude_order(model, "weights")
    Co = ordered_coadaptation(order, ref_hessian(model, x, y, order.names))
    P = order.size
    row = [float(v) for v in Co[position]]
    want = sorted(range(P), key=lambda j: -abs(row[j]))[: min(k, P)]
    positions = ref_positions(model, order.names)
    perm = ref_order(flat_theta(model, order.names))
    got = top_pairs(Co, order, position, k)
    assert [g["position"] for g in got] == want
    for g in got:
        j = g["position"]
        assert g["value"] == row[j]
        assert (g["name"], g["index"]) == positions[perm[j]]
    mags = [abs(g["value"]) for g in got]
    assert mags == sorted(mags, reverse=True)


@pytest.mark.parametrize("params", ["weights", None, ["layers.0.weight"]])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_coadaptation_entries_match_the_full_matrix(params, reduction):
    model, x, y = make_case(12, hidden=(4, 3))
    order = magnitude_order(model, params)
    H = ref_hessian(model, x, y, order.names, reduction=reduction)
    Co = ordered_coadaptation(order, H)
    positions = [order.size - 1, 0, 5, 2, order.size // 2]  # any order, any places
    got = coadaptation_entries(model, x, y, order, positions, reduction=reduction, chunk_size=5)
    p = torch.tensor(positions)
    torch.testing.assert_close(got, Co[p][:, p], rtol=1e-8, atol=1e-10)


def test_coadaptation_entries_bad_positions():
    model, x, y = make_case(12)
    order = magnitude_order(model, "layers.1.weight")
    for bad in ([], [0, 0], [order.size], [-1]):
        with pytest.raises(ValueError, match="positions"):
            coadaptation_entries(model, x, y, order, bad)


@pytest.mark.parametrize("kind", ["lowest", "weight", "unit"])
def test_pooled_block_summary_matches_the_full_matrix(kind):
    model, x, y = make_case(13, hidden=(4, 3))
    order = magnitude_order(model, "weights")
    H = ref_hessian(model, x, y, order.names)
    C = coadaptation_matrix(flat_theta(model, order.names), H)  # flat order
    pruned = pruned_set(model, order, 0.5, kind)
    ref = block_summary(C, pruned)
    got = pooled_block_summary(model, x, y, order, pruned, chunk_size=5)
    for key in ("kept_kept", "kept_pruned", "pruned_pruned"):
        assert getattr(got, key) == pytest.approx(getattr(ref, key), rel=1e-8, abs=1e-10)
    assert (got.n_kept, got.n_pruned) == (ref.n_kept, ref.n_pruned)
    assert math.isnan(got.abs_share_pruned_pruned)
    with pytest.raises(ValueError, match="boolean vector"):
        pooled_block_summary(model, x, y, order, pruned[1:])
