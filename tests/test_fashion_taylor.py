"""Taylor estimates of every pruning of the fashion experiment (``taylor_records``,
``deletion_terms``, ``rank_correlation_table``), by value.

References (``fashion_cases``): the seed's per-layer weight / unit pruning by brute-force python
sorting, d over all parameters, ∇ and H from ``torch.func`` of a float64 deep MLP, the measured
loss from a hand-written forward pass, and Spearman's ρ from explicit ranks.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fashion_cases import (
    F64,
    deletion,
    forward64,
    make_mlp,
    names_of,
    ref_hessian,
    seed_unit_masks,
    seed_weight_masks,
    spearman,
)

from td_analysis.analysis.taylor import ESTIMATORS, deletion_terms
from td_analysis.nets.models import DenseNet
from td_analysis.pipelines.fashion_mlp import rank_correlation_table, taylor_records

KS = (0, 25, 50, 75, 90)


@pytest.mark.parametrize("factory", [None, "densenet"])
@pytest.mark.parametrize("bias", [True, False])
def test_taylor_records_match_torch_func(bias, factory):
    factory = densenet if factory else None
    model, x, y = make_mlp(7, bias=bias, widths=(6, 8, 6, 5, 3), n=30, factory=factory)
    names = names_of(model)
    H, g, f = ref_hessian(model, x, y, names)
    diagH = torch.diagonal(H)
    named = {n: p.detach().double() for n, p in model.named_parameters()}
    base_logits = forward64(named, x)
    base = float(F.cross_entropy(base_logits, y))
    got = taylor_records(model, x, y, KS)
    assert [(r["kind"], r["k"]) for r in got] == [
        (kind, float(k)) for kind in ("weight", "unit") for k in KS if k > 0
    ]
    for r in got:
        rule = seed_weight_masks if r["kind"] == "weight" else seed_unit_masks
        masks = rule(model, r["k"])
        d = deletion(model, masks, names)
        pruned = {
            n: v * torch.from_numpy(~masks[n]).double() if n in masks else v
            for n, v in named.items()
        }
        logits = forward64(pruned, x)
        measured = float(F.cross_entropy(logits, y)) - base
        assert r["n_pruned"] == sum(int(m.sum()) for m in masks.values())
        assert r["first_order"] == pytest.approx(-float(g @ d), rel=1e-9, abs=1e-12)
        assert r["second_order"] == pytest.approx(0.5 * float(d @ H @ d), rel=1e-9, abs=1e-12)
        assert r["diagonal"] == pytest.approx(0.5 * float((diagH * d * d).sum()), rel=1e-9)
        assert r["estimate"] == pytest.approx(r["first_order"] + r["second_order"], rel=1e-12)
        assert r["magnitude"] == pytest.approx(float(d.abs().sum()), rel=1e-12)
        assert r["loss"] == pytest.approx(base, rel=1e-12)
        assert r["measured"] == pytest.approx(measured, rel=1e-9, abs=1e-12)
        assert r["pruned_accuracy"] == pytest.approx(
            float((logits.argmax(1) == y).double().mean()), abs=1e-12
        )
        assert r["accuracy"] == pytest.approx(
            float((base_logits.argmax(1) == y).double().mean()), abs=1e-12
        )


def test_unit_deletion_includes_bias_and_outgoing_weights():
    """A unit pruning deletes more than the rows: its Taylor terms use all of d."""
    model, x, y = make_mlp(8, bias=True, factory=densenet)
    (rec,) = [r for r in taylor_records(model, x, y, (50,)) if r["kind"] == "unit"]
    masks = seed_unit_masks(model, 50)
    assert masks["layers.3.weight"].any() and masks["layers.0.bias"].any()
    names = names_of(model)
    H, _, _ = ref_hessian(model, x, y, names)
    d = deletion(model, masks, names)
    rows_only = {n: m for n, m in masks.items() if n.endswith(".weight")}
    d_rows = deletion(model, rows_only, names)
    assert rec["second_order"] == pytest.approx(0.5 * float(d @ H @ d), rel=1e-9)
    assert abs(0.5 * float(d_rows @ H @ d_rows) - rec["second_order"]) > 1e-6


def test_deletion_terms_on_a_plain_matrix():
    gen = torch.Generator().manual_seed(3)
    P, m = 17, 5
    B = torch.randn(P, P, generator=gen, dtype=F64)
    A = B @ B.T

    class Op:
        def __matmul__(self, V):
            return A @ V

    grad = torch.randn(P, generator=gen, dtype=F64)
    D = torch.randn(P, m, generator=gen, dtype=F64)
    got = deletion_terms(Op(), D, grad=grad, diag=torch.diagonal(A), columns=2)
    for j, t in enumerate(got):
        d = D[:, j]
        assert t["first_order"] == pytest.approx(-float(grad @ d), rel=1e-12)
        assert t["second_order"] == pytest.approx(0.5 * float(d @ A @ d), rel=1e-12)
        assert t["diagonal"] == pytest.approx(0.5 * float((torch.diagonal(A) * d * d).sum()))
    with pytest.raises(ValueError, match="P × m"):
        deletion_terms(Op(), D[1:], grad=grad)


def test_rank_correlation_table_by_explicit_ranks():
    gen = torch.Generator().manual_seed(4)
    rows = []
    for reg in ("none", "targeted-weight"):
        for kind in ("weight", "unit"):
            for i in range(6):
                r = {"regulariser": reg, "bias": True, "kind": kind, "seed": 0, "k": 10.0 * i}
                r["measured"] = float(torch.rand((), generator=gen))
                for est in ESTIMATORS:
                    r[est] = r["measured"] + 0.3 * float(torch.randn((), generator=gen))
                rows.append(r)
    table = rank_correlation_table(rows)
    assert len(table) == 2 * 3
    for t in table:
        sub = [
            r
            for r in rows
            if r["regulariser"] == t["regulariser"] and t["kind"] in (r["kind"], "all")
        ]
        assert t["n"] == len(sub)
        for est in ESTIMATORS:
            want = spearman([r[est] for r in sub], [r["measured"] for r in sub])
            assert t[est] == pytest.approx(want, abs=1e-12)


def densenet(widths, bias):
    """The package's DenseNet: the closed-form (dense) backend of the Hessian operator."""
    return DenseNet(widths[0], widths[1:-1], widths[-1], bias)
