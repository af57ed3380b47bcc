"""Tests of ``td_analysis.analysis.taylor`` against independent references written here.

∇ and H come from ``torch.func.grad`` / ``torch.func.hessian`` of the cross-entropy written as a
function of a flat float64 parameter vector; measured loss changes come from perturbing the
parameters directly; rank correlations from ``scipy.stats.spearmanr``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats
from zoo import Reference, dense_case, selected_names

from td_analysis.analysis.taylor import (
    ESTIMATORS,
    PruningEstimate,
    deletion_vector,
    estimate_pruning,
    pruning_sweep,
    random_mask_sweep,
    rank_correlations,
    taylor_terms,
)

F64 = torch.float64


# ----------------------------------------------------------------------------- references
make_case = dense_case  # the shared case (tests/zoo.py)


def weight_names_ref(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.ndim == 2]


def flat(model, names) -> torch.Tensor:
    named = dict(model.named_parameters())
    return torch.cat([named[n].detach().reshape(-1) for n in names])


def loss_fn(model, x, y, names, reduction="mean"):
    """ℓ(θ) over the flat selection ``names``, the other parameters fixed (reference)."""
    assert list(names) == selected_names(model, names), "the reference keeps the model's order"
    return Reference(model, x, y, params=names, reduction=reduction).loss


def ref_grad_hess(model, x, y, names, reduction="mean"):
    ref = Reference(model, x, y, params=names, reduction=reduction)
    return ref.grad(), ref.hessian()


def perturbed_loss(model, x, y, names, delta, reduction="mean") -> float:
    """ℓ(θ − δ): the loss with the flat selection moved directly by −δ."""
    f = loss_fn(model, x, y, names, reduction)
    with torch.no_grad():
        return float(f(flat(model, names) - delta))


def manual_loss_acc(model, x, y, reduction="mean"):
    """Plain forward pass, written out: ``W₂ relu(W₁ x + b₁) + b₂`` etc."""
    h = x
    layers = list(model.layers)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            h = h @ layer.weight.T + layer.bias
            if i < len(layers) - 1:
                h = h.clamp_min(0)
        logp = h - torch.logsumexp(h, dim=1, keepdim=True)
        nll = -logp[torch.arange(len(y)), y]
        value = float(nll.sum() if reduction == "sum" else nll.mean())
        acc = float((h.argmax(1) == y).double().mean())
    return value, acc


def zeroed_copy(model, masks):
    m = copy.deepcopy(model)
    named = dict(m.named_parameters())
    with torch.no_grad():
        for n, mask in masks.items():
            w = named[n]
            for idx in zip(*torch.nonzero(mask, as_tuple=True), strict=True):
                w[tuple(int(i) for i in idx)] = 0.0
    return m


def per_row_masks(model, fraction, layers=None):
    """Brute-force per-output-unit magnitude rule for every (chosen) weight matrix."""
    names = weight_names_ref(model)
    if layers is not None:
        names = [names[i] for i in layers]
    named = dict(model.named_parameters())
    out = {}
    for n in names:
        w = named[n].detach()
        rows = []
        for row in w.tolist():
            mags = [abs(v) for v in row]
            tau = sorted(mags)[int(fraction * len(row))]
            rows.append([m < tau for m in mags])
        out[n] = torch.tensor(rows)
    return out


def activation_pattern(model, x, names, theta):
    """Signs of every hidden pre-activation at the flat selection value ``theta``."""
    named = {n: p.detach() for n, p in model.named_parameters()}
    offset = 0
    for n in names:
        k = named[n].numel()
        named[n] = theta[offset : offset + k].reshape(named[n].shape)
        offset += k
    pattern, h = [], x
    for i in range(len(model.layers) - 1):
        z = h @ named[f"layers.{i}.weight"].T + named[f"layers.{i}.bias"]
        pattern.append(z > 0)
        h = z.clamp_min(0)
    return torch.cat([p.reshape(-1) for p in pattern])


# ----------------------------------------------------------------------------- deletion vector
def test_deletion_vector_is_theta_on_masked_entries():
    model, _, _ = make_case(0, hidden=(4, 3))
    gen = torch.Generator().manual_seed(1)
    named = dict(model.named_parameters())
    # keys deliberately out of network order: d follows named_parameters() order
    masks = {
        "layers.2.weight": torch.rand(named["layers.2.weight"].shape, generator=gen) < 0.5,
        "layers.0.bias": torch.rand(named["layers.0.bias"].shape, generator=gen) < 0.5,
        "layers.0.weight": torch.rand(named["layers.0.weight"].shape, generator=gen) < 0.5,
    }
    d = deletion_vector(model, masks)
    ref = []
    for n in ("layers.0.weight", "layers.0.bias", "layers.2.weight"):
        w, m = named[n].detach().reshape(-1), masks[n].reshape(-1)
        ref += [float(w[i]) if bool(m[i]) else 0.0 for i in range(w.numel())]
    assert d.tolist() == ref
    assert deletion_vector(model, masks, dtype=torch.float32).dtype == torch.float32


# ----------------------------------------------------------------------------- terms
@pytest.mark.parametrize("hidden", [(4,), (4, 3)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("params", ["weights", "all", ["layers.1.weight"]])
def test_taylor_terms_match_torch_func(hidden, reduction, params):
    model, x, y = make_case(2, hidden=hidden)
    if params == "weights":
        names = weight_names_ref(model)
    elif params == "all":
        names = [n for n, _ in model.named_parameters()]
    else:
        names = params
    g, H = ref_grad_hess(model, x, y, names, reduction)
    theta = flat(model, names)
    gen = torch.Generator().manual_seed(3)
    d = theta * (torch.rand(theta.shape, generator=gen) < 0.4)
    t = taylor_terms(model, x, y, d, params=names, reduction=reduction)
    assert set(t) == set(ESTIMATORS)
    first = -float(g @ d)
    second = 0.5 * float(d @ H @ d)  # full-matrix quadratic form (reference)
    diag = 0.5 * sum(float(H[i, i]) * float(d[i]) ** 2 for i in range(d.numel()))
    assert t["first_order"] == pytest.approx(first, rel=1e-9, abs=1e-12)
    assert t["second_order"] == pytest.approx(second, rel=1e-9, abs=1e-12)
    assert t["diagonal"] == pytest.approx(diag, rel=1e-9, abs=1e-12)
    assert t["estimate"] == pytest.approx(first + second, rel=1e-9, abs=1e-12)
    assert t["magnitude"] == pytest.approx(float(d.abs().sum()), rel=1e-12)


def test_taylor_terms_reuses_given_grad_and_diag():
    model, x, y = make_case(4)
    names = weight_names_ref(model)
    g, H = ref_grad_hess(model, x, y, names)
    d = flat(model, names) * 0.3
    # a fake gradient / diagonal must be used as given (they are not recomputed)
    t = taylor_terms(
        model, x, y, d, params=names, grad=torch.ones_like(g), diag=torch.full_like(g, 2.0)
    )
    assert t["first_order"] == pytest.approx(-float(d.sum()), rel=1e-12)
    assert t["diagonal"] == pytest.approx(float((d * d).sum()), rel=1e-12)
    assert t["second_order"] == pytest.approx(0.5 * float(d @ H @ d), rel=1e-9)


def test_taylor_terms_bad_shape():
    model, x, y = make_case(4)
    names = weight_names_ref(model)
    P = flat(model, names).numel()
    with pytest.raises(ValueError):
        taylor_terms(model, x, y, torch.zeros(P + 1, dtype=F64), params=names)


def test_taylor_terms_zero_deletion():
    model, x, y = make_case(4)
    names = weight_names_ref(model)
    t = taylor_terms(model, x, y, torch.zeros(flat(model, names).numel(), dtype=F64), params=names)
    assert all(t[k] == 0.0 for k in ESTIMATORS)


# ----------------------------------------------------------------------------- measured change
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("layers", [None, [0], [1]])
def test_estimate_pruning_measures_real_change(reduction, layers):
    model, x, y = make_case(5, hidden=(4, 3))
    before = copy.deepcopy(model.state_dict())
    masks = per_row_masks(model, 0.5, layers)
    est = estimate_pruning(model, x, y, masks, label="lbl", fraction=0.5, reduction=reduction)
    assert isinstance(est, PruningEstimate)
    base_loss, base_acc = manual_loss_acc(model, x, y, reduction)
    pruned_loss, pruned_acc = manual_loss_acc(zeroed_copy(model, masks), x, y, reduction)
    assert est.loss == pytest.approx(base_loss, rel=1e-12)
    assert est.pruned_loss == pytest.approx(pruned_loss, rel=1e-12)
    assert est.measured == pytest.approx(pruned_loss - base_loss, rel=1e-9, abs=1e-12)
    assert est.accuracy == pytest.approx(base_acc)
    assert est.pruned_accuracy == pytest.approx(pruned_acc)
    assert est.n_pruned == sum(int(m.sum()) for m in masks.values())
    assert est.label == "lbl" and est.fraction == 0.5
    # the Taylor terms of the same deletion, from the torch.func references
    names = [n for n in weight_names_ref(model) if n in masks]
    g, H = ref_grad_hess(model, x, y, names, reduction)
    d = flat(model, names) * torch.cat([masks[n].reshape(-1) for n in names])
    assert est.first_order == pytest.approx(-float(g @ d), rel=1e-9, abs=1e-12)
    assert est.second_order == pytest.approx(0.5 * float(d @ H @ d), rel=1e-9, abs=1e-12)
    assert est.abs_estimate == pytest.approx(abs(est.first_order + est.second_order), rel=1e-9)
    row = est.as_dict()
    assert row["measured"] == est.measured and row["abs_estimate"] == est.abs_estimate
    # the caller's model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_second_order_error_shrinks_like_eps_cubed():
    """θ → θ − εd: |estimate − measured| = O(ε³) (no ReLU kink crossed), first order O(ε²)."""
    model, x, y = make_case(6, hidden=(4, 3))
    names = weight_names_ref(model)
    theta = flat(model, names)
    gen = torch.Generator().manual_seed(7)
    d = theta * (torch.rand(theta.shape, generator=gen) < 0.5)
    eps = [4e-3 / 2**k for k in range(4)]
    # the loss is smooth along the whole segment used: the ReLU pattern never changes
    base = activation_pattern(model, x, names, theta)
    for e in np.linspace(0.0, eps[0], 200):
        assert torch.equal(activation_pattern(model, x, names, theta - float(e) * d), base)
    base_loss = perturbed_loss(model, x, y, names, torch.zeros_like(theta))
    errs, errs1, rel = [], [], []
    for e in eps:
        t = taylor_terms(model, x, y, e * d, params=names)
        measured = perturbed_loss(model, x, y, names, e * d) - base_loss
        errs.append(abs(t["estimate"] - measured))
        errs1.append(abs(t["first_order"] - measured))
        rel.append(errs[-1] / abs(measured))
    for a, b in zip(errs[:-1], errs[1:], strict=True):
        assert 6.5 < a / b < 9.5  # ≈ 2³
    for a, b in zip(errs1[:-1], errs1[1:], strict=True):
        assert 3.3 < a / b < 4.7  # ≈ 2²: the second-order term matters
    assert all(r1 > r2 for r1, r2 in zip(rel[:-1], rel[1:], strict=True))
    assert all(e2 < e1 for e2, e1 in zip(errs, errs1, strict=True))


def test_taylor_terms_scale_with_eps():
    model, x, y = make_case(6)
    names = weight_names_ref(model)
    d = flat(model, names) * 0.7
    t1 = taylor_terms(model, x, y, d, params=names)
    t2 = taylor_terms(model, x, y, 0.5 * d, params=names)
    assert t2["first_order"] == pytest.approx(0.5 * t1["first_order"], rel=1e-10)
    assert t2["second_order"] == pytest.approx(0.25 * t1["second_order"], rel=1e-10)
    assert t2["diagonal"] == pytest.approx(0.25 * t1["diagonal"], rel=1e-10)
    assert t2["magnitude"] == pytest.approx(0.5 * t1["magnitude"], rel=1e-12)


# ----------------------------------------------------------------------------- sweeps
FRACTIONS = (0.0, 0.25, 0.5, 0.75)


@pytest.mark.parametrize("layers", [None, [1]])
def test_pruning_sweep_matches_per_fraction_references(layers):
    model, x, y = make_case(8, hidden=(4, 3))
    out = pruning_sweep(model, x, y, FRACTIONS, "weight", layers)
    assert len(out) == len(FRACTIONS)
    names = weight_names_ref(model)
    if layers is not None:
        names = [names[i] for i in layers]
    g, H = ref_grad_hess(model, x, y, names)
    base_loss, base_acc = manual_loss_acc(model, x, y)
    for est, fraction in zip(out, FRACTIONS, strict=True):
        assert est.fraction == fraction and est.label == "weight"
        masks = per_row_masks(model, fraction, layers)
        d = flat(model, names) * torch.cat([masks[n].reshape(-1) for n in names])
        assert est.n_pruned == int(sum(int(m.sum()) for m in masks.values()))
        assert est.first_order == pytest.approx(-float(g @ d), rel=1e-9, abs=1e-12)
        assert est.second_order == pytest.approx(0.5 * float(d @ H @ d), rel=1e-9, abs=1e-12)
        diag = 0.5 * float((torch.diagonal(H) * d * d).sum())
        assert est.diagonal == pytest.approx(diag, rel=1e-9, abs=1e-12)
        pruned_loss, pruned_acc = manual_loss_acc(zeroed_copy(model, masks), x, y)
        assert est.loss == pytest.approx(base_loss, rel=1e-12)
        assert est.accuracy == pytest.approx(base_acc)
        assert est.measured == pytest.approx(pruned_loss - base_loss, rel=1e-9, abs=1e-12)
        assert est.pruned_accuracy == pytest.approx(pruned_acc)
    zero = out[0]
    assert zero.n_pruned == 0
    assert all(getattr(zero, k) == 0.0 for k in ESTIMATORS)
    assert zero.measured == 0.0
    # more pruning removes more magnitude
    mags = [e.magnitude for e in out]
    assert mags == sorted(mags)
    again = pruning_sweep(model, x, y, FRACTIONS, "weight", layers)
    assert [e.as_dict() for e in again] == [e.as_dict() for e in out]


def test_pruning_sweep_unit_kind():
    model, x, y = make_case(9, hidden=(4,))
    out = pruning_sweep(model, x, y, (0.0, 0.5), "unit", [0])
    # half of the 4 hidden units, each with 7 incoming weights
    assert [e.n_pruned for e in out] == [0, 2 * 7]


def test_random_mask_sweep_reproducible_and_extremes():
    model, x, y = make_case(10, hidden=(4, 3))
    a = random_mask_sweep(model, x, y, 5, seed=3)
    b = random_mask_sweep(model, x, y, 5, seed=3)
    c = random_mask_sweep(model, x, y, 5, seed=4)
    assert len(a) == 5
    assert [e.as_dict() for e in a] == [e.as_dict() for e in b]
    assert [e.as_dict() for e in a] != [e.as_dict() for e in c]
    names = weight_names_ref(model)
    total = flat(model, names).numel()
    base_loss, _ = manual_loss_acc(model, x, y)
    for e in a:
        assert e.label == "random"
        assert 0.05 <= e.fraction <= 0.95
        assert 0 < e.n_pruned < total
        assert e.loss == pytest.approx(base_loss, rel=1e-12)
        assert 0 < e.magnitude < float(flat(model, names).abs().sum())
        assert e.estimate == pytest.approx(e.first_order + e.second_order, rel=1e-12)

    # nothing pruned: all terms zero; everything pruned: d = θ over every weight
    none = random_mask_sweep(model, x, y, 2, fraction_range=(0.0, 0.0))
    for e in none:
        assert e.n_pruned == 0 and e.measured == 0.0
        assert all(getattr(e, k) == 0.0 for k in ESTIMATORS)
    full = random_mask_sweep(model, x, y, 1, fraction_range=(1.0, 1.0))[0]
    g, H = ref_grad_hess(model, x, y, names)
    d = flat(model, names)
    assert full.n_pruned == total
    assert full.magnitude == pytest.approx(float(d.abs().sum()), rel=1e-12)
    assert full.first_order == pytest.approx(-float(g @ d), rel=1e-9, abs=1e-12)
    assert full.second_order == pytest.approx(0.5 * float(d @ H @ d), rel=1e-9, abs=1e-12)
    masks = {
        n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n in names
    }
    pruned_loss, _ = manual_loss_acc(zeroed_copy(model, masks), x, y)
    assert full.measured == pytest.approx(pruned_loss - base_loss, rel=1e-9)


def test_random_mask_sweep_layers_and_bad_range():
    model, x, y = make_case(11, hidden=(4, 3))
    out = random_mask_sweep(model, x, y, 3, fraction_range=(1.0, 1.0), layers=[2])
    assert [e.n_pruned for e in out] == [3 * 3] * 3
    for bad in [(0.5, 0.2), (-0.1, 0.5), (0.2, 1.5)]:
        with pytest.raises(ValueError):
            random_mask_sweep(model, x, y, 2, fraction_range=bad)


# ----------------------------------------------------------------------------- correlations
def fake(measured: float, **values) -> PruningEstimate:
    base = {k: 0.0 for k in ESTIMATORS}
    base.update(values)
    return PruningEstimate(
        label="x",
        fraction=0.5,
        n_pruned=1,
        loss=1.0,
        pruned_loss=1.0 + measured,
        accuracy=0.5,
        pruned_accuracy=0.4,
        **base,
    )


def test_rank_correlations_match_scipy():
    rng = np.random.default_rng(0)
    n = 12
    measured = rng.normal(size=n)
    cols = {
        "first_order": rng.normal(size=n),
        "second_order": measured + 0.3 * rng.normal(size=n),
        "diagonal": -measured,
        "estimate": measured**3,  # monotone: ρ = 1
        "magnitude": np.arange(n, dtype=float),
    }
    cols["first_order"][3] = cols["first_order"][7]  # a tie
    rows = [fake(float(measured[i]), **{k: float(v[i]) for k, v in cols.items()}) for i in range(n)]
    got = rank_correlations(rows)
    assert set(got) == set(ESTIMATORS)
    for k, v in cols.items():
        # reference ΔE as the estimates carry it (pruned_loss − loss)
        ref_measured = [r.pruned_loss - r.loss for r in rows]
        assert got[k] == pytest.approx(stats.spearmanr(v, ref_measured).statistic, abs=1e-12)
    assert got["estimate"] == pytest.approx(1.0)
    assert got["diagonal"] == pytest.approx(-1.0)


def test_rank_correlations_nan_for_constant_or_short():
    rows = [fake(float(i), first_order=1.0, second_order=float(i)) for i in range(5)]
    got = rank_correlations(rows)
    assert math.isnan(got["first_order"])  # constant estimator
    assert got["second_order"] == pytest.approx(1.0)
    flat_measured = [fake(0.25, second_order=float(i)) for i in range(5)]
    assert all(math.isnan(v) for v in rank_correlations(flat_measured).values())
    two = [fake(float(i), second_order=float(i)) for i in range(2)]
    assert all(math.isnan(v) for v in rank_correlations(two).values())
