"""Tests of ``td_analysis.analysis.pruning`` against brute-force references in plain numpy/python.

References (REFERENCE.md, official for-ai/TD evaluation), for a torch weight ``W`` (out × in):

* ``"weight"``: per output unit (row), remove ``|W_oi| < sorted(|W_o,:|)[int(k·in)]``;
* ``"unit"``: remove rows with ``‖W_o,:‖₂ < sorted(norms)[int(k·out)]``;
* ``"global"``: remove ``|W^l_oi| < sorted(all chosen magnitudes)[int(k·n)]``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from td_analysis.analysis.pruning import (
    PRUNING_KINDS,
    apply_masks,
    prune,
    pruning_curve,
    pruning_masks,
)
from td_analysis.nets.models import DenseNet
from td_analysis.nn.dropout import Regulariser, RegulariserConfig
from td_analysis.training.loop import evaluate

FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 0.95)


def ref_weight(w: np.ndarray, k: float) -> np.ndarray:
    out, n_in = w.shape
    j = int(k * n_in)
    mask = np.zeros_like(w, dtype=bool)
    for o in range(out):
        mags = [abs(float(v)) for v in w[o]]
        tau = sorted(mags)[j]
        mask[o] = [m < tau for m in mags]
    return mask


def ref_unit(w: np.ndarray, k: float) -> np.ndarray:
    norms = [math.sqrt(sum(float(v) ** 2 for v in row)) for row in w]
    tau = sorted(norms)[int(k * w.shape[0])]
    return np.repeat(np.array([n < tau for n in norms])[:, None], w.shape[1], axis=1)


def ref_global(ws: list[np.ndarray], k: float) -> list[np.ndarray]:
    mags = sorted(abs(float(v)) for w in ws for v in w.ravel())
    tau = mags[int(k * len(mags))]
    return [np.abs(w) < tau for w in ws]


def _model(seed: int, hidden=(7, 5), in_features=12, num_classes=4, bias=True, dtype=None):
    torch.manual_seed(seed)
    m = DenseNet(in_features, hidden, num_classes, bias)
    return m.to(dtype) if dtype is not None else m


def _weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.detach().double().numpy() for n, p in model.named_parameters() if p.ndim == 2}


def _tied_model() -> DenseNet:
    """Weights from a small integer set (many ties, duplicated rows and constant rows)."""
    m = _model(0, dtype=torch.float64)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for i, layer in enumerate(m.layers):
            vals = rng.integers(-2, 3, size=layer.weight.shape).astype(np.float64)
            vals[0] = 1.0  # a constant row
            if layer.weight.shape[0] > 2:
                vals[2] = vals[1]  # duplicated rows
            layer.weight.copy_(torch.from_numpy(vals * (i + 1)))
    return m


# ------------------------------------------------------------------------------------------------
# Masks against brute force
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["random", "tied"])
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_masks_match_brute_force(which: str, fraction: float) -> None:
    model = _model(1, dtype=torch.float64) if which == "random" else _tied_model()
    ws = _weights(model)
    names = list(ws)

    got = pruning_masks(model, fraction, "weight")
    assert list(got) == names
    for n in names:
        assert np.array_equal(got[n].numpy(), ref_weight(ws[n], fraction)), n

    got = pruning_masks(model, fraction, "unit")
    for n in names:
        assert got[n].shape == model.get_parameter(n).shape
        assert np.array_equal(got[n].numpy(), ref_unit(ws[n], fraction)), n

    got = pruning_masks(model, fraction, "global")
    want = ref_global([ws[n] for n in names], fraction)
    for n, w in zip(names, want, strict=True):
        assert np.array_equal(got[n].numpy(), w), n


def test_layer_selection_matches_brute_force() -> None:
    model = _model(2, hidden=(9, 6, 5))
    ws = _weights(model)
    names = list(ws)
    for layers in ([0], [1, 3], [3, 0]):
        chosen = [names[i] for i in sorted(layers)]
        got = pruning_masks(model, 0.5, "weight", layers)
        assert list(got) == chosen
        got = pruning_masks(model, 0.5, "global", layers)
        want = ref_global([ws[n] for n in chosen], 0.5)
        for n, w in zip(chosen, want, strict=True):
            assert np.array_equal(got[n].numpy(), w)
        pruned, _ = prune(model, 0.5, "weight", layers)
        for i, n in enumerate(names):
            same = torch.equal(pruned.get_parameter(n), model.get_parameter(n))
            assert same == (i not in layers), (layers, n)


def test_global_threshold_is_shared_across_layers() -> None:
    model = _model(3, hidden=(4,), in_features=6, num_classes=3)
    with torch.no_grad():
        model.layers[0].weight.copy_(0.001 * torch.arange(1.0, 25.0).reshape(4, 6))  # tiny
        model.layers[1].weight.copy_(torch.arange(1.0, 13.0).reshape(3, 4))  # large
    masks = pruning_masks(model, 0.5, "global")  # 36 weights: τ = sorted[18] = 0.019
    assert masks["layers.0.weight"].reshape(-1).tolist() == [True] * 18 + [False] * 6
    assert not masks["layers.1.weight"].any()
    masks = pruning_masks(model, 0.75, "global")  # τ = sorted[27] = 4 → all tiny + 1, 2, 3
    assert bool(masks["layers.0.weight"].all())
    assert masks["layers.1.weight"].reshape(-1).tolist() == [True] * 3 + [False] * 9
    with torch.no_grad():
        model.layers[0].weight.fill_(0.01)  # ties: τ = 0.01 itself, nothing is < τ
    assert not any(m.any() for m in pruning_masks(model, 0.5, "global").values())


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_pruned_share_for_distinct_magnitudes(fraction: float) -> None:
    torch.manual_seed(5)
    model = DenseNet(100, (40,), 20)  # continuous init: distinct magnitudes
    _, masks = prune(model, fraction, "weight")
    w0, w1 = masks["layers.0.weight"], masks["layers.1.weight"]
    assert w0.sum(dim=1).tolist() == [int(fraction * 100)] * 40
    assert w1.sum(dim=1).tolist() == [int(fraction * 40)] * 20
    _, masks = prune(model, fraction, "unit")
    assert masks["layers.0.weight"].all(dim=1).sum() == int(fraction * 40)
    assert masks["layers.1.weight"].all(dim=1).sum() == int(fraction * 20)
    assert all(bool((m.all(dim=1) | ~m.any(dim=1)).all()) for m in masks.values())  # whole rows
    _, masks = prune(model, fraction, "global")
    n = 100 * 40 + 40 * 20
    removed = sum(int(m.sum()) for m in masks.values())
    assert removed == int(fraction * n)
    assert abs(removed / n - fraction) <= 1 / n


# ------------------------------------------------------------------------------------------------
# The pruned copy
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PRUNING_KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_prune_zeroes_exactly_the_mask_and_never_mutates(kind: str, bias: bool) -> None:
    model = _model(6, bias=bias)
    model.train()
    before = copy.deepcopy(model.state_dict())
    pruned, masks = prune(model, 0.6, kind)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the input model was mutated"
    assert pruned is not model
    assert model.training, "prune must not change the input model's mode"
    for name, p in pruned.named_parameters():
        orig = before[name]
        if name in masks:
            m = masks[name]
            assert (p[m] == 0).all()
            assert torch.equal(p[~m], orig[~m])
        else:
            assert name.endswith("bias")
            assert torch.equal(p, orig), "biases must never be pruned"
    assert all(n.endswith("weight") for n in masks)
    # the pruned copy is independent of the input
    with torch.no_grad():
        next(pruned.parameters()).add_(1.0)
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)


def test_biases_are_never_pruned_even_when_tiny() -> None:
    model = _model(7)
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.fill_(1e-9)
    pruned, masks = prune(model, 0.9, "global")
    assert set(masks) == {"layers.0.weight", "layers.1.weight", "layers.2.weight"}
    for layer in pruned.layers:
        assert (layer.bias == 1e-9).all()


@pytest.mark.parametrize("kind", ["weight", "unit"])
@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.75])
def test_pruning_at_gamma_removes_exactly_the_targeted_set(gamma: float, kind: str) -> None:
    """Pruning at k = γ removes the set targeted dropout targets in training.  Both sides are
    compared with the brute-force rule (``ref_weight``/``ref_unit``); the trained-time targeted
    set is observed from outside: with α = 1 every targeted weight is dropped, so it is the set
    of nonzero weights that the regularised layer zeroes."""
    model = _tied_model()
    ref = ref_weight if kind == "weight" else ref_unit
    ws = _weights(model)
    _, masks = prune(model, gamma, kind)
    reg = Regulariser(RegulariserConfig(f"targeted-{kind}", gamma=gamma, alpha=1.0), 3)
    for l, (name, layer) in enumerate(zip(masks, model.layers, strict=True)):
        want = ref(ws[name], gamma)
        assert np.array_equal(masks[name].numpy(), want), name
        with torch.no_grad():
            dropped = (reg.weight(l, layer.weight, 0) == 0) & (layer.weight != 0)
        nonzero = ws[name] != 0
        assert np.array_equal(dropped.numpy(), want & nonzero), name
        assert want.any() and not want.all(), "the case must separate targeted from kept"


def test_apply_masks_validates() -> None:
    model = _model(8)
    with pytest.raises(KeyError, match="unknown"):
        apply_masks(model, {"layers.9.weight": torch.zeros(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        apply_masks(model, {"layers.0.weight": torch.zeros(2, 2, dtype=torch.bool)})


# ------------------------------------------------------------------------------------------------
# Pruning curves
# ------------------------------------------------------------------------------------------------


def _numpy_eval(ws: list[np.ndarray], bs: list[np.ndarray], x: np.ndarray, y: np.ndarray):
    h = x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
    h = h - h.max(axis=1, keepdims=True)
    logp = h - np.log(np.exp(h).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean()), float((h.argmax(1) == y).mean())


@pytest.mark.parametrize("kind", PRUNING_KINDS)
def test_pruning_curve_against_independent_evaluation(kind: str) -> None:
    model = _model(9, dtype=torch.float64)
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(300, 12, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (300,), generator=gen)
    fractions = [0.0, 0.3, 0.5, 0.8]
    rows = pruning_curve(model, x, y, fractions, kind)
    assert [r["fraction"] for r in rows] == fractions
    assert all(r["kind"] == kind for r in rows)

    base = evaluate(model, x, y)
    assert rows[0]["accuracy"] == base["accuracy"]
    assert rows[0]["loss"] == pytest.approx(base["loss"], rel=1e-12)
    assert rows[0]["removed"] == 0 and rows[0]["removed_share"] == 0.0

    ws = list(_weights(model).values())
    bs = [layer.bias.detach().numpy() for layer in model.layers]
    total = sum(w.size for w in ws)
    for row in rows:
        f = row["fraction"]
        if kind == "weight":
            masks = [ref_weight(w, f) for w in ws]
        elif kind == "unit":
            masks = [ref_unit(w, f) for w in ws]
        else:
            masks = ref_global(ws, f)
        pruned = [np.where(m, 0.0, w) for m, w in zip(masks, ws, strict=True)]
        loss, acc = _numpy_eval(pruned, bs, x.numpy(), y.numpy())
        assert row["accuracy"] == pytest.approx(acc, abs=1e-12)
        assert row["loss"] == pytest.approx(loss, rel=1e-9)
        assert row["removed"] == sum(int(m.sum()) for m in masks)
        assert row["removed_share"] == pytest.approx(row["removed"] / total)


def test_pruning_curve_does_not_mutate_model() -> None:
    model = _model(10)
    before = copy.deepcopy(model.state_dict())
    x, y = torch.randn(50, 12), torch.randint(0, 4, (50,))
    pruning_curve(model, x, y, [0.5, 0.9], "global")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_invalid_fraction_raises(bad: float) -> None:
    model = _model(11)
    for kind in PRUNING_KINDS:
        with pytest.raises(ValueError, match="fraction"):
            prune(model, bad, kind)
    with pytest.raises(ValueError, match="fraction"):
        pruning_curve(model, torch.randn(4, 12), torch.zeros(4, dtype=torch.long), [0.0, bad])


def test_invalid_kind_raises() -> None:
    with pytest.raises(ValueError, match="kind"):
        prune(_model(12), 0.5, "units")


@pytest.mark.parametrize("layers", [[3], [-1], [0, 7]])
def test_invalid_layer_index_raises(layers: list[int]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        prune(_model(13), 0.5, "weight", layers)


def test_model_without_linear_layers_raises() -> None:
    with pytest.raises(ValueError, match="no nn.Linear"):
        prune(nn.Sequential(nn.ReLU()), 0.5)
